#!/usr/bin/env bash
# asyncio's read exceptions, from the shell: how they look on the wire.
#
# 1. ReadUntil over the reader's limit is an error: RESOURCE_EXHAUSTED (exit
#    code 64 + 8 = 72) with a google.rpc.ErrorInfo{reason: LIMIT_OVERRUN}
#    and a streammgr.v1.LimitOverrunError{consumed} in the status details
#    (asyncio.LimitOverrunError). The data stays buffered.
# 2. ReadExactly past EOF is not an error: the response says
#    "incomplete": true with the partial bytes (asyncio.IncompleteReadError).
# 3. Offsets (lib.sh's sm_read and sm_write send them): a read that times
#    out loses nothing (the offset stays, the next read gets the bytes the
#    peer sends later); a read at an offset already read is answered again
#    (what a retry after a lost answer does); offsets outside what the
#    daemon keeps are OUT_OF_RANGE (exit 64 + 11: OFFSET_BEHIND,
#    OFFSET_AHEAD); a write retried at the same offset is accepted once.
#
# Usage: errors_demo.sh [ADDR]
#   ADDR: unix:/path/to/streammgrd.sock or host:port (default $STREAMMGR_ADDR)
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sm_init "$@"
((${#SM_ARGS[@]} == 0)) || sm_die "usage: errors_demo.sh [ADDR]"

# A pair whose readers have a limit of 8 bytes.
sm_call OpenPair '{"limit": 8}'
resp=$SM_OUT
sid=$(sm_field firstStreamId <<<"$resp")
peer=$(sm_field secondStreamId <<<"$resp")
sm_track "$sid"
sm_track "$peer"

# 16 bytes and no newline: more than the limit before the separator.
chunk=0123456789ABCDEF
sm_write "$peer" "$(sm_b64 "$chunk")"
sm Drain "{\"stream_id\": \"$peer\"}" >/dev/null

# sm_read keeps the failed call's status, as JSON (grpcurl -format-error),
# in SM_ERR:
#   {"code": 8, "message": "Separator is not found, and chunk exceed the limit",
#    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "LIMIT_OVERRUN", ...},
#                {"@type": "type.googleapis.com/streammgr.v1.LimitOverrunError", "consumed": "16"}]}
rc=0
sm_read ReadUntil "$sid" "\"separator\": \"$(sm_b64 $'\n')\"" 2>/dev/null || rc=$?
((rc > 64)) || sm_die "ReadUntil: expected a RESOURCE_EXHAUSTED error, got exit $rc"
code=${SM_CODES[rc - 64]}
reason=$(sm_field reason <<<"$SM_ERR")
consumed=$(sm_field consumed <<<"$SM_ERR")
echo "ReadUntil over the limit: $code $reason consumed=$consumed"
echo "  message: $(sm_field message <<<"$SM_ERR")"

# Nothing was lost: the 16 bytes are still buffered.
sm_read ReadExactly "$sid" '"n": 16'
echo "data kept: $(sm_repr_b64 "$(sm_field data <<<"$SM_OUT")")"

# The peer writes "abc" and closes: EOF comes before 10 bytes.
sm_write "$peer" "$(sm_b64 abc)"
sm Close "{\"stream_id\": \"$peer\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$peer\"}" >/dev/null
sm_untrack "$peer"
#   {"data": "YWJj", "incomplete": true, "expected": "10", "nextOffset": "19"}
sm_read ReadExactly "$sid" '"n": 10'
resp=$SM_OUT
[[ $(sm_field incomplete <<<"$resp") == true ]] || sm_die "ReadExactly: expected incomplete: $resp"
partial=$(sm_field data <<<"$resp")
echo "ReadExactly past EOF: incomplete partial=$(sm_repr_b64 "$partial") expected=$(sm_field expected <<<"$resp")"

sm Close "{\"stream_id\": \"$sid\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$sid\"}" >/dev/null
sm_untrack "$sid"

# 3. Offsets, on a new pair.
sm_call OpenPair '{}'
sid=$(sm_field firstStreamId <<<"$SM_OUT")
peer=$(sm_field secondStreamId <<<"$SM_OUT")
sm_track "$sid"
sm_track "$peer"

# A read with a deadline of our own (SM_TIMEOUT, grpcurl's -max-time, which
# covers grpcurl's dial too): nothing comes, it fails with DEADLINE_EXCEEDED
# (exit 64 + 4; exit 1 if the deadline passed while dialing), is not
# retried, and the offset stays.
rc=0
SM_TIMEOUT=0.5 sm_read Read "$sid" '"n": 100' 2>/dev/null || rc=$?
((rc == 64 + 4)) || [[ $rc == 1 && $SM_ERR == *'deadline exceeded'* ]] ||
  sm_die "Read: expected DEADLINE_EXCEEDED (exit 68), got exit $rc: $SM_ERR"
echo "Read timed out after 500 ms: offset still ${SM_READ_OFFSET[$sid]:-0}"
sm_write "$peer" "$(sm_b64 'late data')"
echo "Peer sent 'late data' after the timeout"
before=${SM_READ_OFFSET[$sid]:-0}
sm_read ReadExactly "$sid" '"n": 9'
echo "Next read at offset $before: $(sm_repr_b64 "$(sm_field data <<<"$SM_OUT")"), next offset ${SM_READ_OFFSET[$sid]}: nothing lost"

# An answer lost on the way: a retry sends the offset it had, and the
# daemon answers with the same bytes.
SM_READ_OFFSET[$sid]=0
sm_read ReadExactly "$sid" '"n": 9'
echo "Read again at offset 0 (a lost answer): $(sm_repr_b64 "$(sm_field data <<<"$SM_OUT")") replayed"
sm_write "$peer" "$(sm_b64 more)"
at=${SM_READ_OFFSET[$sid]}
sm_read ReadExactly "$sid" '"n": 4'
echo "Read $(sm_repr_b64 "$(sm_field data <<<"$SM_OUT")") at offset $at: the bytes before $at are acknowledged, next offset ${SM_READ_OFFSET[$sid]}"
# The bytes before 9 are gone (OFFSET_BEHIND, metadata earliest_offset);
# the stream has not reached 99 (OFFSET_AHEAD, metadata next_offset).
at=${SM_READ_OFFSET[$sid]}
for try in 0:earliest_offset 99:next_offset; do
  SM_READ_OFFSET[$sid]=${try%%:*}
  rc=0
  sm_read Read "$sid" '"n": 100' 2>/dev/null || rc=$?
  ((rc == 64 + 11)) || sm_die "Read at offset ${try%%:*}: expected OUT_OF_RANGE (exit 75), got exit $rc"
  echo "Read at offset ${try%%:*}: ${SM_CODES[rc - 64]} $(sm_field reason <<<"$SM_ERR") ${try#*:}=$(sm_field "${try#*:}" <<<"$SM_ERR")"
done
SM_READ_OFFSET[$sid]=$at

# A write retried at the same offset (its answer lost) is accepted once.
offset=${SM_WRITE_OFFSET[$peer]}
for attempt in '' ' again (a retry)'; do
  SM_WRITE_OFFSET[$peer]=$offset
  sm_write "$peer" "$(sm_b64 once)"
  echo "Write 'once' at offset $offset$attempt: next offset ${SM_WRITE_OFFSET[$peer]}"
done
sm Close "{\"stream_id\": \"$peer\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$peer\"}" >/dev/null
sm_untrack "$peer"
sm_read Read "$sid" # no n: to EOF
echo "Received to EOF: $(sm_repr_b64 "$(sm_field data <<<"$SM_OUT")")"

sm Close "{\"stream_id\": \"$sid\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$sid\"}" >/dev/null
sm_untrack "$sid"
