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
  SM_TMP=$(mktemp)
}

# Every call gives up when the daemon cannot be reached within
# SM_CONNECT_TIMEOUT seconds. Calls that wait for the peer or the network
# (reads, Drain, WaitClosed, Open, Serve, Accept) may legitimately wait for
# long; the others must be answered within SM_MAX_TIME seconds.
SM_CONNECT_TIMEOUT=${SM_CONNECT_TIMEOUT:-10}
SM_MAX_TIME=${SM_MAX_TIME:-60}
sm_flags() {
  SM_FLAGS=(-connect-timeout "$SM_CONNECT_TIMEOUT")
  case $1 in
    Read | ReadLine | ReadExactly | ReadUntil | Drain | WaitClosed | Open | Serve | Accept) ;;
    *) SM_FLAGS+=(-max-time "$SM_MAX_TIME") ;;
  esac
}

# sm METHOD JSON: calls StreamService/METHOD with the request JSON and prints
# the response JSON. On failure grpcurl prints the status (code, message,
# details) on stderr and sm returns grpcurl's exit code (64 + gRPC code), so
# under set -e the script stops there. grpcurl runs in the background and
# sm waits for it (cmd & wait $!): the INT/TERM traps below can run while a
# call blocks, and kill it.
sm() {
  sm_flags "$1"
  sm_wait "$GRPCURL" "${SM_CONN[@]}" "${SM_FLAGS[@]}" -d "$2" "$SM_TARGET" "$SM_SERVICE/$1"
}

# sm_json METHOD JSON: like sm, but a failure is printed on stderr as the
# google.rpc.Status in JSON (grpcurl -format-error), for scripts to parse.
sm_json() {
  sm_flags "$1"
  sm_wait "$GRPCURL" "${SM_CONN[@]}" "${SM_FLAGS[@]}" -format-error -d "$2" "$SM_TARGET" "$SM_SERVICE/$1"
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
  sm "$@" >"$SM_TMP"
  SM_OUT=$(<"$SM_TMP")
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
  if [[ -n ${SM_TMP:-} ]]; then rm -f "$SM_TMP"; fi
}
trap sm_cleanup EXIT
# Interrupted: exit 128 + the signal's number, and the EXIT trap cleans up.
trap 'trap - INT; exit 130' INT
trap 'trap - TERM; exit 143' TERM
