#!/usr/bin/env bash
# Waiting for data on a socket pair, through streammgrd, with grpcurl.
#
# The asyncio documentation's socketpair example: the daemon makes a
# connected pair (OpenPair, its socket.socketpair()); "abc" is written on one
# end and read from the other.
#
# Usage: socketpair.sh [ADDR]
#   ADDR: unix:/path/to/streammgrd.sock or host:port (default $STREAMMGR_ADDR)
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sm_init "$@"
((${#SM_ARGS[@]} == 0)) || sm_die "usage: socketpair.sh [ADDR]"

# Both ends are streams of the daemon:
#   {"firstStreamId": "s-...", "secondStreamId": "s-..."}
sm_call OpenPair '{}'
resp=$SM_OUT
rsid=$(sm_field firstStreamId <<<"$resp")
wsid=$(sm_field secondStreamId <<<"$resp")
sm_track "$rsid"
sm_track "$wsid"

# Simulate the reception of data from the network: "abc" is YWJj in base64.
sm_write "$wsid" "$(sm_b64 abc)"

# Wait for data: Read returns as soon as bytes are there.
sm_read Read "$rsid" '"n": 100'
resp=$SM_OUT
echo "Received: $(sm_repr_b64 "$(sm_field data <<<"$resp")")"

# Close both ends.
for sid in "$rsid" "$wsid"; do
  sm Close "{\"stream_id\": \"$sid\"}" >/dev/null
  sm WaitClosed "{\"stream_id\": \"$sid\"}" >/dev/null
  sm_untrack "$sid"
done
