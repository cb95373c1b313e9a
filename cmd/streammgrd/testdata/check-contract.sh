#!/usr/bin/env bash
# Checks a running streammgrd against the public names of the StreamService contract:
# every RPC present, and the request/response fields that clients hard-code.
# Usage: check-contract.sh unix:/path/to.sock   (or host:port)
# Needs grpcurl on PATH (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4).
set -u
addr=${1:?usage: check-contract.sh unix:/path | host:port}
if [[ $addr == unix:* ]]; then G=(grpcurl -plaintext -unix "${addr#unix:}"); else G=(grpcurl -plaintext "$addr"); fi
S=streammgr.v1.StreamService
miss=0
rpcs=$("${G[@]}" list $S 2>&1) || { echo "cannot list $S: $rpcs"; exit 1; }
for m in Open StartServer Accept Read ReadLine ReadExactly ReadUntil AtEof Write WriteLines Drain \
         WriteEof CanWriteEof Close WaitClosed IsClosing StartTls GetExtraInfo CloseServer ListStreams ListServers; do
  echo "$rpcs" | grep -qx "$S.$m" || { echo "missing RPC: $m"; miss=$((miss+1)); }
done
# fields clients hard-code, in proto (snake_case) spelling: METHOD:direction:field ...
check() { # $1 message type, rest: fields
  local t=$1; shift
  local d; d=$("${G[@]}" describe "$t" 2>/dev/null) || { echo "missing message: $t"; miss=$((miss+1)); return; }
  for f in "$@"; do echo "$d" | grep -qE "[ .]$f = [0-9]+" || { echo "missing field: $t.$f"; miss=$((miss+1)); }; done
}
msg() { "${G[@]}" describe "$S.$1" 2>/dev/null | sed -n "s/.*rpc $1 *( *\.\{0,1\}\([A-Za-z0-9_.]*\) *) returns ( *\.\{0,1\}\([A-Za-z0-9_.]*\) *).*/\\$2/p"; }
for spec in "Open:1:tcp unix tls limit local_addr connect_timeout" "Open:2:stream_id peername sockname" \
            "StartServer:1:tcp unix tls limit backlog reuse_port start_serving" "StartServer:2:server_id sockets" \
            "Accept:1:server_id timeout" "Accept:2:stream_id peername" \
            "Read:1:stream_id n offset" "Read:2:data eof next_offset" "ReadLine:1:stream_id offset" "ReadLine:2:data eof next_offset" \
            "ReadExactly:1:stream_id n offset" "ReadExactly:2:data incomplete expected next_offset" \
            "ReadUntil:1:stream_id separator separators offset" "ReadUntil:2:data incomplete next_offset" \
            "AtEof:2:at_eof" "Write:1:stream_id data offset" "Write:2:buffered next_offset" "WriteLines:1:stream_id lines offset" "WriteLines:2:buffered next_offset" \
            "CanWriteEof:2:can_write_eof" "IsClosing:2:is_closing" "StartTls:1:stream_id tls" \
            "GetExtraInfo:1:stream_id name" "GetExtraInfo:2:value" "CloseServer:1:server_id"; do
  IFS=: read -r m dir fields <<<"$spec"
  t=$(msg "$m" "$dir"); [ -n "$t" ] || continue
  check "$t" $fields
done
check streammgr.v1.LimitOverrunError consumed found next_offset
"${G[@]}" grpc.health.v1.Health/Check >/dev/null 2>&1 || { echo "health service not answering"; miss=$((miss+1)); }
if [ $miss = 0 ]; then echo "contract: all names present"; else echo "contract: $miss names missing"; exit 1; fi
