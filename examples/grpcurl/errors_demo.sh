#!/usr/bin/env bash
# asyncio's read exceptions, from the shell: how they look on the wire.
#
# 1. ReadUntil over the reader's limit is an error: RESOURCE_EXHAUSTED (exit
#    code 64 + 8 = 72) with a google.rpc.ErrorInfo{reason: LIMIT_OVERRUN}
#    and a streammgr.v1.LimitOverrunError{consumed} in the status details
#    (asyncio.LimitOverrunError). The data stays buffered.
# 2. ReadExactly past EOF is not an error: the response says
#    "incomplete": true with the partial bytes (asyncio.IncompleteReadError).
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
sm Write "{\"stream_id\": \"$peer\", \"data\": \"$(sm_b64 "$chunk")\"}" >/dev/null
sm Drain "{\"stream_id\": \"$peer\"}" >/dev/null

# -format-error prints the failed call's status as JSON on stderr:
#   {"code": 8, "message": "Separator is not found, and chunk exceed the limit",
#    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "LIMIT_OVERRUN", ...},
#                {"@type": "type.googleapis.com/streammgr.v1.LimitOverrunError", "consumed": "16"}]}
rc=0
sm_json ReadUntil "{\"stream_id\": \"$sid\", \"separator\": \"$(sm_b64 $'\n')\"}" 2>"$SM_TMP" >/dev/null || rc=$?
status=$(<"$SM_TMP")
((rc > 64)) || sm_die "ReadUntil: expected a RESOURCE_EXHAUSTED error, got exit $rc"
code=${SM_CODES[rc - 64]}
reason=$(sm_field reason <<<"$status")
consumed=$(sm_field consumed <<<"$status")
echo "ReadUntil over the limit: $code $reason consumed=$consumed"
echo "  message: $(sm_field message <<<"$status")"

# Nothing was lost: the 16 bytes are still buffered.
sm_call ReadExactly "{\"stream_id\": \"$sid\", \"n\": 16}"
resp=$SM_OUT
echo "data kept: $(sm_repr_b64 "$(sm_field data <<<"$resp")")"

# The peer writes "abc" and closes: EOF comes before 10 bytes.
sm Write "{\"stream_id\": \"$peer\", \"data\": \"$(sm_b64 abc)\"}" >/dev/null
sm Close "{\"stream_id\": \"$peer\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$peer\"}" >/dev/null
sm_untrack "$peer"
#   {"data": "YWJj", "incomplete": true, "expected": "10"}
sm_call ReadExactly "{\"stream_id\": \"$sid\", \"n\": 10}"
resp=$SM_OUT
[[ $(sm_field incomplete <<<"$resp") == true ]] || sm_die "ReadExactly: expected incomplete: $resp"
partial=$(sm_field data <<<"$resp")
echo "ReadExactly past EOF: incomplete partial=$(sm_repr_b64 "$partial") expected=$(sm_field expected <<<"$resp")"

sm Close "{\"stream_id\": \"$sid\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$sid\"}" >/dev/null
sm_untrack "$sid"
