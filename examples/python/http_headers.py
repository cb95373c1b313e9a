#!/usr/bin/env python3
"""Get HTTP headers, through streammgrd.

The asyncio documentation's "Get HTTP headers": sends a HEAD request over a
connection the daemon opens (TLS for https://, verified against --cafile or
the system roots, with the URL's host as server name) and prints the
response header lines.

    .venv/bin/python http_headers.py unix:/tmp/streammgrd.sock https://example.com/
"""

import argparse
import urllib.parse

import streammgr_client as sm


async def print_http_headers(client: sm.Client, url: str, cafile: str | None) -> None:
    url = urllib.parse.urlsplit(url)
    if url.scheme == "https":
        ca_pem = open(cafile, encoding="ascii").read() if cafile else None
        reader, writer = await client.open_connection(
            url.hostname, url.port or 443, ssl=True, server_hostname=url.hostname, ca_pem=ca_pem
        )
    elif url.scheme == "http":
        reader, writer = await client.open_connection(url.hostname, url.port or 80)
    else:
        raise ValueError(f"not an http:// or https:// URL: {url.geturl()!r}")

    async with sm.aborting(writer):  # on a failure or Ctrl-C, abort the stream
        await send_head(reader, writer, url)


async def send_head(reader: sm.StreamReader, writer: sm.StreamWriter, url: urllib.parse.SplitResult) -> None:
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    if url.port:
        host += f":{url.port}"
    # The request target percent-encoded (a space would make it three
    # words: 400 Bad Request); what is already encoded stays as it is.
    path = urllib.parse.quote(url.path or "/", safe="/%:@!$&'()*+,;=~")
    if url.query:
        path += "?" + urllib.parse.quote(url.query, safe="/%:@!$&'()*+,;=~?")
    query = f"HEAD {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"

    await writer.write(query.encode("latin-1"))
    while True:
        line = await reader.readline()
        if not line:
            break

        line = line.decode("latin1").rstrip()
        if line:
            print(f"HTTP header> {line}")

    # Ignore the body, close the socket
    await writer.close()
    await writer.wait_closed()


async def main(args: argparse.Namespace) -> None:
    async with sm.Client(args.address) as client:
        await print_http_headers(client, args.url, args.cafile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sm.add_address_argument(parser)
    parser.add_argument("url", help="http:// or https:// URL")
    parser.add_argument("--cafile", help="PEM file of CA certificates to trust for https (default: system roots)")
    sm.run(main(sm.parse_args(parser)))
