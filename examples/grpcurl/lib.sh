# shellcheck shell=bash
# lib.sh: what the grpcurl examples share. Source it from a script, then call
#   sm_init "$@"
# which takes the daemon address from the first argument (unix:/path,
# unix:///path or host:port) or from $STREAMMGR_ADDR, and leaves the other
# arguments in SM_ARGS. Abstract socket names (unix:@name) are rejected:
# grpcurl cannot dial them.
#
# Everything here is plain grpcurl. The daemon registers gRPC reflection, so
# grpcurl needs no .proto files: `grpcurl -plaintext -unix /path/to.sock list`
# shows the service, `... describe streammgr.v1.StreamService.Read` an RPC.
# A few facts about grpcurl's JSON that the scripts rely on:
#   - requests take proto names (stream_id) or JSON names (streamId);
#     responses use JSON names (streamId, firstStreamId);
#   - bytes travel as base64 ("data": "YWJj" is abc);
#   - int64 values come back as strings ("expected": "10");
#   - fields with their default value are left out (no "data" at EOF);
#   - a failed call exits with 64 + the gRPC code and prints the status on
#     stderr, details included (google.rpc.ErrorInfo and our own
#     streammgr.v1.LimitOverrunError are rendered through reflection).
# jq would make the parsing shorter; the output is one field per line, so
# sed does it without one more tool to install.
#
# Offsets and retries. sm_read and sm_write (sm_writelines) keep each
# stream's offsets in SM_READ_OFFSET[ID] (inbound: the bytes its reads
# received, plus those an over-long ReadLine dropped) and SM_WRITE_OFFSET[ID]
# (outbound: the bytes the daemon accepted), 0 for a stream not seen yet;
# they send them in every request and take the next ones from the answers'
# nextOffset. A call that is safe to repeat (a read or write carrying an
# offset, Drain, Close, WaitClosed, AtEof, ...; never Open, OpenPair,
# StartServer, Accept or Serve) is made again, up to SM_RETRIES times (5)
# after 0.05, 0.1, 0.2, ... s (at most 1 s), when grpcurl exits with
# UNAVAILABLE (64 + 14) and the status names no streammgr reason (the
# connection broke: the daemon's own UNAVAILABLE errors, CONNECTION_RESET,
# SHUTTING_DOWN, ..., carry one and are never retried), or with
# DEADLINE_EXCEEDED / CANCELLED (64 + 4, 64 + 1) of the -max-time this file
# set on the attempt, or with ABORTED READ_SUPERSEDED (64 + 10: a late copy
# of an earlier attempt took the read's place). A retried read gets the
# bytes of an answer that was lost; a retried write is accepted once.
# SM_TIMEOUT=SECONDS before a call gives it a deadline of the caller's (as
# asyncio.wait_for): when it passes, the call fails with 64 + 4 and is not
# retried, and the offsets stay where they were, so the next read gets
# every byte.

set -euo pipefail

SM_SERVICE=streammgr.v1.StreamService

# sm_die MESSAGE: print to stderr and exit 1.
sm_die() {
  echo "error: $*" >&2
  exit 1
}

# The grpcurl binary: $GRPCURL, else grpcurl on PATH, else the one
# `go install` put in $(go env GOPATH)/bin.
sm_find_grpcurl() {
  if [[ -n ${GRPCURL:-} ]]; then
    :
  elif command -v grpcurl >/dev/null 2>&1; then
    GRPCURL=$(command -v grpcurl)
  elif command -v go >/dev/null 2>&1 && [[ -x $(go env GOPATH)/bin/grpcurl ]]; then
    GRPCURL=$(go env GOPATH)/bin/grpcurl
  else
    GRPCURL=$HOME/go/bin/grpcurl
  fi
  [[ -x $GRPCURL ]] || sm_die "grpcurl not found: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 (or run examples/setup.sh)"
}

# shellcheck disable=SC2034 # SM_ARGS is for the scripts
# sm_init "$@": sets SM_CONN (grpcurl's connection flags), SM_TARGET (its
# address argument) and SM_ARGS (the arguments after the daemon address).
sm_init() {
  local addr=${STREAMMGR_ADDR:-}
  # An argument starting with unix: is always the address (unix:///path
  # contains :// but is no URL argument).
  if (($# > 0)) && [[ $1 == unix:* || ($1 != -* && $1 != *://*) ]]; then
    addr=$1
    shift
  fi
  [[ -n $addr ]] || sm_die "no daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR"
  case $addr in
    unix:*)
      # grpcurl's -unix says the address is a socket path.
      SM_CONN=(-plaintext -unix)
      SM_TARGET=${addr#unix:}
      SM_TARGET=${SM_TARGET#//} # unix:///abs/path
      [[ $SM_TARGET != @* ]] ||
        sm_die "$addr: abstract Unix socket addresses (unix:@name) are not supported by grpcurl; give the daemon a socket path (unix:/path) or host:port"
      ;;
    *)
      SM_CONN=(-plaintext)
      SM_TARGET=$addr
      ;;
  esac
  SM_ARGS=("$@")
  sm_find_grpcurl
  # Scratch files: SM_TMP for the scripts, the helpers' own named after
  # the shell's $BASHPID (a script may run calls in background subshells).
  SM_TMPDIR=$(mktemp -d)
  SM_TMP=$SM_TMPDIR/tmp
}

# Every call gives up when the daemon cannot be reached within
# SM_CONNECT_TIMEOUT seconds (grpcurl keeps dialing meanwhile, so a daemon
# that comes back within it is found). Calls that wait for the peer or the
# network (reads, Drain, WaitClosed, Open, Serve, Accept) may legitimately
# wait for long; each attempt of the others must be answered within
# SM_MAX_TIME seconds. SM_TIMEOUT, when set, is the call's deadline instead.
SM_CONNECT_TIMEOUT=${SM_CONNECT_TIMEOUT:-10}
SM_MAX_TIME=${SM_MAX_TIME:-60}
SM_RETRIES=${SM_RETRIES:-5}
sm_flags() {
  SM_FLAGS=(-connect-timeout "$SM_CONNECT_TIMEOUT")
  SM_TIMED= # set when the attempt's deadline is this file's, not the caller's
  if [[ -n ${SM_TIMEOUT:-} ]]; then
    SM_FLAGS+=(-max-time "$SM_TIMEOUT")
    return
  fi
  case $1 in
    Read | ReadLine | ReadExactly | ReadUntil | Drain | WaitClosed | Open | Serve | Accept) ;;
    *) SM_FLAGS+=(-max-time "$SM_MAX_TIME") SM_TIMED=1 ;;
  esac
}

# sm_safe METHOD JSON: whether the call can be made twice with the effect
# of once: a read or write with an offset, or a call that is idempotent.
sm_safe() {
  case $1 in
    Read | ReadLine | ReadExactly | ReadUntil | Write | WriteLines) [[ $2 == *'"offset":'* ]] ;;
    Drain | WriteEof | Close | Abort | WaitClosed | AtEof | IsClosing | CanWriteEof | GetExtraInfo | ListStreams | ListServers) ;;
    *) return 1 ;;
  esac
}

# sm_reason FILE: the streammgr reason in a failed call's status (grpcurl
# prints the google.rpc.ErrorInfo detail as JSON in either error format).
sm_reason() {
  sed -n 's/^.*"reason": *"\([A-Z_]*\)".*$/\1/p' "$1" | head -n 1
}

# sm_retryable RC REASON: whether a failed attempt is worth making again:
# UNAVAILABLE with no streammgr reason (the connection broke or could not be
# made), DEADLINE_EXCEEDED / CANCELLED of this file's -max-time (the daemon
# may have seen the deadline too: its reason then names the code), or a
# read superseded by a late copy of an earlier attempt (ABORTED
# READ_SUPERSEDED; it consumed nothing).
sm_retryable() {
  case $1 in
    78) [[ -z $2 ]] ;;
    74) [[ $2 == READ_SUPERSEDED ]] ;;
    65 | 68) [[ -n $SM_TIMED && (-z $2 || $2 == "${SM_CODES[$1 - 64]}") ]] ;;
    *) return 1 ;;
  esac
}

# sm_retry METHOD JSON COMMAND...: runs the grpcurl COMMAND (with sm_wait),
# and again, after a backoff, while it fails in a way worth retrying and the
# call is safe to repeat (see Offsets and retries above). The last
# failure's status is printed on stderr and its exit code returned.
sm_retry() {
  local method=$1 json=$2 rc attempt=0 ms status=$SM_TMPDIR/attempt.$BASHPID
  shift 2
  while :; do
    rc=0
    sm_wait "$@" 2>"$status" || rc=$?
    ((rc != 0)) || return 0
    if ((attempt < SM_RETRIES)) && sm_safe "$method" "$json" &&
      sm_retryable "$rc" "$(sm_reason "$status")"; then
      ms=$((50 << attempt))
      ((ms < 1000)) || ms=1000
      attempt=$((attempt + 1))
      sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
      continue
    fi
    cat "$status" >&2
    return "$rc"
  done
}

# sm METHOD JSON: calls StreamService/METHOD with the request JSON and prints
# the response JSON. On failure grpcurl prints the status (code, message,
# details) on stderr and sm returns grpcurl's exit code (64 + gRPC code), so
# under set -e the script stops there. grpcurl runs in the background and
# sm waits for it (cmd & wait $!): the INT/TERM traps below can run while a
# call blocks, and kill it.
sm() {
  sm_flags "$1"
  sm_retry "$1" "$2" "$GRPCURL" "${SM_CONN[@]}" "${SM_FLAGS[@]}" -d "$2" "$SM_TARGET" "$SM_SERVICE/$1"
}

# sm_json METHOD JSON: like sm, but a failure is printed on stderr as the
# google.rpc.Status in JSON (grpcurl -format-error), for scripts to parse.
sm_json() {
  sm_flags "$1"
  sm_retry "$1" "$2" "$GRPCURL" "${SM_CONN[@]}" "${SM_FLAGS[@]}" -format-error -d "$2" "$SM_TARGET" "$SM_SERVICE/$1"
}

# sm_wait COMMAND...: runs COMMAND in the background and waits for it,
# returning its exit code; SM_CHILD is its pid meanwhile, for the traps.
sm_wait() {
  local rc=0
  "$@" &
  SM_CHILD=$!
  wait "$SM_CHILD" || rc=$?
  SM_CHILD=
  return "$rc"
}

# sm_call METHOD JSON: sm with the response JSON in SM_OUT rather than on
# stdout. Use it instead of resp=$(sm ...) in a script's main shell: bash
# runs no trap while it waits for a command substitution, so a blocked read
# could not be interrupted.
sm_call() {
  local out=$SM_TMPDIR/out.$BASHPID
  sm "$@" >"$out" || return
  SM_OUT=$(<"$out")
}

# sm_call_json METHOD JSON: sm_json with the response JSON in SM_OUT and,
# on failure, the status JSON in SM_ERR (not printed).
sm_call_json() {
  local rc=0 out=$SM_TMPDIR/out.$BASHPID err=$SM_TMPDIR/err.$BASHPID
  sm_json "$@" >"$out" 2>"$err" || rc=$?
  SM_OUT=$(<"$out")
  SM_ERR=$(<"$err")
  return "$rc"
}

declare -A SM_READ_OFFSET=() SM_WRITE_OFFSET=()

# sm_read METHOD ID [FIELDS]: a read (Read, ReadLine, ReadExactly or
# ReadUntil) of stream ID at SM_READ_OFFSET[ID], FIELDS being more of the
# request's JSON members ('"n": 100'). The response JSON is in SM_OUT and
# the offset moves to its nextOffset. A failure leaves the offset (but
# LIMIT_OVERRUN and LINE_TOO_LONG move it to their detail's nextOffset),
# prints the status as JSON on stderr, keeps it in SM_ERR, and returns
# grpcurl's exit code. Call it in the main shell, not in $(...).
#   {"data": "bGF0ZSBkYXRh", "nextOffset": "9"}
sm_read() {
  local id=$2 rc=0 next
  sm_call_json "$1" "{\"stream_id\": \"$id\", \"offset\": ${SM_READ_OFFSET[$id]:-0}${3:+, $3}}" || rc=$?
  if ((rc == 0)); then
    next=$(sm_field nextOffset <<<"$SM_OUT")
    SM_READ_OFFSET[$id]=${next:-0} # left out when 0
    return 0
  fi
  next=$(sm_field nextOffset <<<"$SM_ERR") # the streammgr.v1.LimitOverrunError detail
  if [[ -n $next ]]; then SM_READ_OFFSET[$id]=$next; fi
  printf '%s\n' "$SM_ERR" >&2
  return "$rc"
}

# sm_write ID BASE64: Write of stream ID at SM_WRITE_OFFSET[ID], which moves
# to the answer's nextOffset; the response JSON is in SM_OUT. A failure
# (status on stderr, in SM_ERR) leaves the offset: the write accepted nothing.
sm_write() {
  sm_write_req Write "$1" "\"data\": \"$2\""
}

# sm_writelines ID BASE64...: WriteLines, as sm_write.
sm_writelines() {
  local id=$1 lines=''
  shift
  if (($# > 0)); then printf -v lines '"%s", ' "$@"; fi
  sm_write_req WriteLines "$id" "\"lines\": [${lines%, }]"
}

sm_write_req() {
  local id=$2 rc=0 next
  sm_call_json "$1" "{\"stream_id\": \"$id\", \"offset\": ${SM_WRITE_OFFSET[$id]:-0}, $3}" || rc=$?
  if ((rc != 0)); then
    printf '%s\n' "$SM_ERR" >&2
    return "$rc"
  fi
  next=$(sm_field nextOffset <<<"$SM_OUT")
  SM_WRITE_OFFSET[$id]=${next:-0}
}

# sm_field NAME: the value of the first "NAME": ... line of the JSON on
# stdin: a string without its quotes (escapes left as they are), or a
# number or true/false; empty when the field is absent.
sm_field() {
  sed -n -e "s/^ *\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" \
    -e "s/^ *\"$1\": \([^\",]*\),\{0,1\}\$/\1/p" | head -n 1
}

# sm_b64 STRING: STRING's bytes in base64, for bytes fields.
sm_b64() {
  printf '%s' "$1" | base64 | tr -d '\n'
}

# sm_str STRING: STRING as a JSON string literal (quoted, escaped).
sm_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# sm_unb64 BASE64: the decoded bytes in SM_OUT, trailing newlines kept (a
# plain $(... | base64 -d) strips them; the x guards them). A bash string
# cannot hold NUL bytes: to show data, use sm_repr_b64.
sm_unb64() {
  SM_OUT=$(printf '%s' "$1" | base64 -d && printf x)
  SM_OUT=${SM_OUT%x}
}

# sm_repr STRING: STRING quoted as Python's repr() shows a str ('Hello',
# 'a\n', "it's").
sm_repr() {
  local s=${1//\\/\\\\}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  sm_quote "$s"
}

# sm_repr_b64 BASE64: sm_repr of the decoded bytes, all of them: trailing
# newlines as \n, NUL and the other control bytes as \x00 ... \x1f, \x7f.
sm_repr_b64() {
  local hex s=''
  for hex in $(printf '%s' "$1" | base64 -d | od -An -v -tx1); do
    case $hex in
      09) s+='\t' ;;
      0a) s+='\n' ;;
      0d) s+='\r' ;;
      5c) s+="\\\\" ;;
      [01]? | 7f) s+="\\x$hex" ;;
      *) printf -v hex '%b' "\\x$hex" && s+=$hex ;;
    esac
  done
  sm_quote "$s"
}

# sm_quote ESCAPED: the quotes of Python's repr() around ESCAPED, whose
# backslashes are escapes already: '...', or "..." when it has a ' and no ".
sm_quote() {
  local s=$1
  if [[ $s == *\'* && $s != *\"* ]]; then
    printf '"%s"' "$s"
  else
    printf "'%s'" "${s//\'/\\\'}"
  fi
}

# gRPC code names, by number (grpcurl's exit code is 64 + the code).
# shellcheck disable=SC2034 # for the scripts
SM_CODES=(OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS
  PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE UNIMPLEMENTED
  INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED)

# Streams this script opened: sm_track ID remembers one; if the script exits
# with an error or is interrupted (SIGINT, SIGTERM) they are aborted, so no
# handle is left behind in the daemon
# (handles outlive the client; an idle one is released after 10 minutes).
SM_TRACKED=()
sm_track() {
  SM_TRACKED+=("$1")
}
sm_untrack() {
  local id keep=()
  for id in "${SM_TRACKED[@]}"; do [[ $id == "$1" ]] || keep+=("$id"); done
  SM_TRACKED=("${keep[@]+"${keep[@]}"}")
}
sm_cleanup() {
  local rc=$? id
  # A call still running (the script was interrupted): stop it.
  if [[ -n ${SM_CHILD:-} ]]; then kill "$SM_CHILD" 2>/dev/null || true; fi
  if ((rc != 0)); then
    for id in "${SM_TRACKED[@]+"${SM_TRACKED[@]}"}"; do
      sm Abort "{\"stream_id\": \"$id\"}" >/dev/null 2>&1 || true
    done
  fi
  if [[ -n ${SM_TMPDIR:-} ]]; then rm -rf "$SM_TMPDIR"; fi
}
trap sm_cleanup EXIT
# Interrupted: exit 128 + the signal's number, and the EXIT trap cleans up.
trap 'trap - INT; exit 130' INT
trap 'trap - TERM; exit 143' TERM
