#!/usr/bin/env bash
# TCP echo client using streams, through streammgrd, with grpcurl.
#
# The asyncio documentation's echo client:
#     reader, writer = await asyncio.open_connection('127.0.0.1', 8888)
#     writer.write(message.encode()); await writer.drain()
#     data = await reader.read(100)
#     writer.close(); await writer.wait_closed()
# Each of those lines is one RPC here.
#
# Usage: echo_client.sh [ADDR] [--host 127.0.0.1] [--port 8888] [--message 'Hello World!']
#   ADDR: unix:/path/to/streammgrd.sock or host:port (default $STREAMMGR_ADDR)
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sm_init "$@"
set -- "${SM_ARGS[@]+"${SM_ARGS[@]}"}"

host=127.0.0.1 port=8888 message='Hello World!'
while (($# > 0)); do
  case $1 in
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --message) message=$2; shift 2 ;;
    *) sm_die "unknown argument $1 (usage: echo_client.sh [ADDR] [--host H] [--port P] [--message M])" ;;
  esac
done

# open_connection: the daemon connects and answers a stream handle.
#   {"streamId": "s-...", "peername": "127.0.0.1:8888", "sockname": "127.0.0.1:41234"}
sm_call Open "{\"tcp\": {\"host\": $(sm_str "$host"), \"port\": $port}}"
resp=$SM_OUT
sid=$(sm_field streamId <<<"$resp")
sm_track "$sid"

# writer.write(): bytes are base64 in JSON. Write only buffers; Drain waits
# until the daemon has sent them (down to the low-water mark). sm_write
# sends the stream's outbound offset, so a retry is accepted once:
#   {"stream_id": "s-...", "offset": 0, "data": "SGVsbG8gV29ybGQh"}
#   {"nextOffset": "12"}
echo "Send: $(sm_repr "$message")"
sm_write "$sid" "$(sm_b64 "$message")"
sm Drain "{\"stream_id\": \"$sid\"}" >/dev/null

# reader.read(100): up to 100 bytes, as soon as any arrive. sm_read sends
# the inbound offset reached so far and keeps the next one.
#   {"stream_id": "s-...", "offset": 0, "n": 100}
#   {"data": "SGVsbG8gV29ybGQh", "nextOffset": "12"}
sm_read Read "$sid" '"n": 100'
resp=$SM_OUT
echo "Received: $(sm_repr_b64 "$(sm_field data <<<"$resp")")"

# writer.close() and wait_closed(): flush, close the socket, wait until it
# is gone. The handle is released by the daemon afterwards.
echo "Close the connection"
sm Close "{\"stream_id\": \"$sid\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$sid\"}" >/dev/null
sm_untrack "$sid"
