#!/usr/bin/env bash
# TCP echo server using streams, through streammgrd, with grpcurl.
#
# The asyncio documentation's echo server: the daemon listens and accepts
# (StartServer); the Serve RPC streams each accepted connection to us as it
# arrives (asyncio's client_connected_cb), and a background job echoes it:
# read up to 100 bytes, write them back, drain, close. Any TCP client can
# talk to it: printf hi | nc 127.0.0.1 8888. SIGINT or SIGTERM closes the
# server (CloseServer, aborting the connections still being served) and
# exits 0.
#
# Usage: echo_server.sh [ADDR] [--host 127.0.0.1] [--port 8888]   (port 0: any free port)
#   ADDR: unix:/path/to/streammgrd.sock or host:port (default $STREAMMGR_ADDR)
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sm_init "$@"
set -- "${SM_ARGS[@]+"${SM_ARGS[@]}"}"

host=127.0.0.1 port=8888
while (($# > 0)); do
  case $1 in
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    *) sm_die "unknown argument $1 (usage: echo_server.sh [ADDR] [--host H] [--port P])" ;;
  esac
done

# handle_echo STREAM_ID PEERNAME: one connection, as asyncio's handle_echo.
handle_echo() {
  local sid=$1 peer=$2 data64 message
  sm_read Read "$sid" '"n": 100'
  data64=$(sm_field data <<<"$SM_OUT") # empty if the client sent nothing
  message=$(sm_repr_b64 "$data64")
  echo "Received $message from $peer"

  echo "Send: $message"
  sm_write "$sid" "$data64"
  sm Drain "{\"stream_id\": \"$sid\"}" >/dev/null

  echo "Close the connection"
  sm Close "{\"stream_id\": \"$sid\"}" >/dev/null
  sm WaitClosed "{\"stream_id\": \"$sid\"}" >/dev/null
}

# serve_one STREAM_ID PEERNAME: handle_echo in a subshell (set -e applies
# there: it is not the left side of ||); if it fails, the stream is
# aborted, so it is not left open in the daemon.
serve_one() {
  local rc=0
  handle_echo "$@" &
  wait $! || rc=$?
  if ((rc != 0)); then
    echo "connection handler failed: exit $rc" >&2
    sm Abort "{\"stream_id\": \"$1\"}" >/dev/null 2>&1 || true
  fi
}

# start_server: the daemon binds and listens.
#   {"serverId": "srv-...", "sockets": ["127.0.0.1:8888"]}
resp=$(sm StartServer "{\"tcp\": {\"host\": $(sm_str "$host"), \"port\": $port}}")
server_id=$(sm_field serverId <<<"$resp")
# The bound addresses are the bare strings of the "sockets" list.
sockets=$(sed -n 's/^ *"\([^"]*\)",\{0,1\}$/\1/p' <<<"$resp" | paste -sd, - | sed 's/,/, /g')
echo "Serving on $sockets"

# On SIGINT/SIGTERM: close the server and abort the connections it accepted
# (the daemon then ends the Serve call, and the handlers still waiting on
# their streams fail and end), wait for the handlers, exit 0.
stop() {
  trap - INT TERM
  sm CloseServer "{\"server_id\": \"$server_id\", \"abort_clients\": true}" >/dev/null || true
  wait
  exit 0
}
trap stop INT TERM

# serve_forever: Serve is a server-streaming RPC; grpcurl prints each
# ServeResponse as it comes, one field per line:
#   {
#     "streamId": "s-...",
#     "peername": "127.0.0.1:54321"
#   }
exec 3< <(sm Serve "{\"server_id\": \"$server_id\"}")
serve_pid=$!
sid='' peer=''
while IFS= read -r -u 3 line; do
  case $line in
    *'"streamId":'*) sid=$(sm_field streamId <<<"$line") ;;
    *'"peername":'*) peer=$(sm_field peername <<<"$line") ;;
    '}')
      serve_one "$sid" "$peer" &
      sid='' peer=''
      ;;
  esac
done
# The stream of connections ended without a signal: the server was closed
# by someone else (grpcurl exits 0) or the call failed (grpcurl's status).
wait "$serve_pid" || sm_die "Serve ended: exit $?"
