#!/usr/bin/env python3
"""Register an open socket to wait for data using streams, through streammgrd.

The asyncio documentation's socketpair example, with streammgr.socketpair()
in place of socket.socketpair(): the daemon makes the connected pair, and
streammgr.open_connection(sock=...) wraps one end in a reader and a writer.

    .venv/bin/python socketpair.py unix:/tmp/streammgrd.sock
"""

import argparse
import asyncio
import os
import signal
import sys

import streammgr


async def wait_for_data(address):
    # Get a reference to the current event loop because
    # we want to access low-level APIs.
    loop = asyncio.get_running_loop()

    # Create a pair of connected sockets.
    rsock, wsock = streammgr.socketpair(address=address)

    # Register the open socket to wait for data.
    reader, writer = await streammgr.open_connection(sock=rsock, address=address)

    # Simulate the reception of data from the network
    loop.call_soon(wsock.send, 'abc'.encode())

    # Wait for data
    data = await reader.read(100)

    # Got data, we are done: close the socket
    print("Received:", data)
    writer.close()
    await writer.wait_closed()

    # Close the second socket
    wsock.close()



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
    args = parser.parse_args()
    if not args.address:
        parser.error('no daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR')
    try:
        asyncio.run(interruptible(wait_for_data(args.address)))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: asyncio.run closed the streams
        sys.exit(130)
