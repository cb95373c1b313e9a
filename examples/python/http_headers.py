#!/usr/bin/env python3
"""Get HTTP headers, through streammgrd.

The asyncio documentation's "Get HTTP headers", with
streammgr.open_connection in place of asyncio.open_connection: sends a HEAD
request over a connection the daemon opens (TLS for https://, verified
against --cafile or the system roots, with the URL's host as server name)
and prints the response header lines.

    .venv/bin/python http_headers.py unix:/tmp/streammgrd.sock https://example.com/
"""

import argparse
import asyncio
import os
import signal
import ssl
import sys
import urllib.parse

import streammgr


async def print_http_headers(url, cafile, address):
    url = urllib.parse.urlsplit(url)
    if url.scheme == 'https':
        # The context is described to the daemon, which does the TLS: its
        # CA certificates (cafile) and hostname checking go with it.
        context = ssl.create_default_context(cafile=cafile)
        reader, writer = await streammgr.open_connection(
            url.hostname, url.port or 443, ssl=context, address=address)
    elif url.scheme == 'http':
        reader, writer = await streammgr.open_connection(
            url.hostname, url.port or 80, address=address)
    else:
        raise ValueError(f'not an http:// or https:// URL: {url.geturl()!r}')

    host = f'[{url.hostname}]' if ':' in url.hostname else url.hostname
    if url.port:
        host += f':{url.port}'
    # The request target percent-encoded (a space would make it three
    # words: 400 Bad Request); what is already encoded stays as it is.
    path = urllib.parse.quote(url.path or '/', safe="/%:@!$&'()*+,;=~")
    if url.query:
        path += '?' + urllib.parse.quote(url.query, safe="/%:@!$&'()*+,;=~?")
    query = (
        f"HEAD {path} HTTP/1.0\r\n"
        f"Host: {host}\r\n"
        f"\r\n"
    )

    writer.write(query.encode('latin-1'))
    while True:
        line = await reader.readline()
        if not line:
            break

        line = line.decode('latin1').rstrip()
        if line:
            print(f'HTTP header> {line}')

    # Ignore the body, close the socket
    writer.close()
    await writer.wait_closed()



async def interruptible(coro):
    """Runs coro with SIGTERM cancelling it as Ctrl-C does (asyncio.run does
    that for SIGINT only); on its way out asyncio.run closes the streams
    still open, so none is left in the daemon."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    return await coro


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('address', nargs='?', default=os.environ.get('STREAMMGR_ADDR'),
                        help='streammgrd address, unix:/path or host:port (default $STREAMMGR_ADDR)')
    parser.add_argument('url', help='http:// or https:// URL')
    parser.add_argument('--cafile', help='PEM file of CA certificates to trust for https (default: system roots)')
    args = parser.parse_args()
    if not args.address:
        parser.error('no daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR')
    try:
        asyncio.run(interruptible(print_http_headers(args.url, args.cafile, args.address)))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: asyncio.run closed the stream
        sys.exit(130)
