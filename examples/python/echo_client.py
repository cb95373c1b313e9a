#!/usr/bin/env python3
"""TCP echo client using streams, through streammgrd.

The asyncio documentation's "TCP echo client using streams", with
streammgr.open_connection in place of asyncio.open_connection: the socket
is the daemon's.

    .venv/bin/python echo_client.py unix:/tmp/streammgrd.sock --port 8888
"""

import argparse
import asyncio
import os
import signal
import sys

import streammgr


async def tcp_echo_client(message, host, port, address):
    reader, writer = await streammgr.open_connection(host, port, address=address)

    print(f'Send: {message!r}')
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f'Received: {data.decode()!r}')

    print('Close the connection')
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
    parser.add_argument('--host', default='127.0.0.1', help='echo server host (default 127.0.0.1)')
    parser.add_argument('--port', type=int, default=8888, help='echo server port (default 8888)')
    parser.add_argument('--message', default='Hello World!', help="what to send (default 'Hello World!')")
    args = parser.parse_args()
    if not args.address:
        parser.error('no daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR')
    try:
        asyncio.run(interruptible(tcp_echo_client(args.message, args.host, args.port, args.address)))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: asyncio.run closed the stream
        sys.exit(130)
