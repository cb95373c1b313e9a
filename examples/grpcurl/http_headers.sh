#!/usr/bin/env bash
# Get HTTP headers, through streammgrd, with grpcurl.
#
# The asyncio documentation's HTTP header example: the daemon opens port 80
# (or 443 with TLS for https://, or the URL's port), we send
#   HEAD <path> HTTP/1.0\r\nHost: <host>\r\n\r\n
# and print each line of the answer as `HTTP header> ...` until EOF.
#
# Usage: http_headers.sh [ADDR] URL [--cafile ca.pem]
#   ADDR:   unix:/path/to/streammgrd.sock or host:port (default $STREAMMGR_ADDR)
#   URL:    http://host[:port]/path or https://...
#   cafile: PEM certificates to trust for https (default: the system roots)
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sm_init "$@"
set -- "${SM_ARGS[@]+"${SM_ARGS[@]}"}"

url='' cafile=''
while (($# > 0)); do
  case $1 in
    --cafile) cafile=$2; shift 2 ;;
    -*) sm_die "unknown option $1" ;;
    *) [[ -z $url ]] || sm_die "one URL only"; url=$1; shift ;;
  esac
done
[[ -n $url ]] || sm_die "usage: http_headers.sh [ADDR] URL [--cafile ca.pem]"

# urlsplit: scheme, host (IPv6 in brackets), optional port, path and query.
re='^(https?)://(\[[^]/]+\]|[^]/:?#[]+)(:([0-9]+))?([/?][^#]*)?(#.*)?$'
[[ $url =~ $re ]] || sm_die "not an http:// or https:// URL: $url"
scheme=${BASH_REMATCH[1]} host=${BASH_REMATCH[2]} port=${BASH_REMATCH[4]} path=${BASH_REMATCH[5]}
hostname=${host#[}
hostname=${hostname%]}
header_host=$host${port:+:$port}
[[ $path == /* ]] || path=/$path

# The request target percent-encoded, as Python's urllib.parse.quote: a
# space would split it (400 Bad Request); bytes allowed in a path or query,
# %XX escapes included, stay as they are.
percent_encode() {
  local LC_ALL=C s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9/%:@!\$\&\'\(\)*+,\;=~?._-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c" && out+=$c ;;
    esac
  done
  printf '%s' "$out"
}
path=$(percent_encode "$path")
if [[ $scheme == https ]]; then port=${port:-443}; else port=${port:-80}; fi

# open_connection(host, port, ssl=...): with "tls" set the daemon does the
# handshake, verifying the certificate for server_hostname (also sent as
# SNI) against ca_pem, or the system roots when ca_pem is empty.
open="{\"tcp\": {\"host\": $(sm_str "$hostname"), \"port\": $port}"
if [[ $scheme == https ]]; then
  ca_pem=''
  if [[ -n $cafile ]]; then ca_pem=$(<"$cafile"); fi
  open+=", \"tls\": {\"server_hostname\": $(sm_str "$hostname"), \"ca_pem\": $(sm_str "$ca_pem")}"
fi
sm_call Open "$open}"
resp=$SM_OUT
sid=$(sm_field streamId <<<"$resp")
sm_track "$sid"

query=$(printf 'HEAD %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$header_host" | base64 | tr -d '\n')
sm_write "$sid" "$query"

# readline() until it answers no data (EOF). Each line is decoded as
# latin-1 (iconv) and stripped of trailing whitespace, "\r\n" included.
while :; do
  sm_read ReadLine "$sid"
  resp=$SM_OUT
  data=$(sm_field data <<<"$resp")
  [[ -n $data ]] || break
  line=$(printf '%s' "$data" | base64 -d | iconv -f latin1 -t utf-8 | sed 's/[[:space:]]*$//')
  if [[ -n $line ]]; then
    echo "HTTP header> $line"
  fi
done

# Ignore the body, close the socket.
sm Close "{\"stream_id\": \"$sid\"}" >/dev/null
sm WaitClosed "{\"stream_id\": \"$sid\"}" >/dev/null
sm_untrack "$sid"
