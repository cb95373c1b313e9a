#!/usr/bin/env python3
"""TCP echo server using streams, through streammgrd.

The asyncio documentation's "TCP echo server using streams", with
streammgr.start_server in place of asyncio.start_server: the daemon listens
and accepts, and handle_echo gets each connection as asyncio would give it.
Any TCP client can talk to it (nc 127.0.0.1 8888). SIGINT or SIGTERM closes
the server and aborts the connections still being served (none is left
open in the daemon), then the program exits 0.

    .venv/bin/python echo_server.py unix:/tmp/streammgrd.sock --port 8888
"""

import argparse
import asyncio
import os
import signal
import sys

import streammgr


async def handle_echo(reader, writer):
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info('peername')

    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the connection")
    writer.close()
    await writer.wait_closed()


async def main(host, port, address):
    server = await streammgr.start_server(handle_echo, host, port, address=address)

    addrs = ', '.join(str(sock.getsockname()) for sock in server.sockets)
    print(f'Serving on {addrs}')

    # serve_forever() would wait, once cancelled, for every connection to
    # end (Python 3.12's Server.wait_closed): stop on a signal instead.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    server.abort_clients()
    await server.wait_closed()


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('address', nargs='?', default=os.environ.get('STREAMMGR_ADDR'),
                        help='streammgrd address, unix:/path or host:port (default $STREAMMGR_ADDR)')
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    parser.add_argument('--port', type=int, default=8888, help='port (default 8888; 0 picks a free one)')
    args = parser.parse_args()
    if not args.address:
        parser.error('no daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR')
    sys.stdout.reconfigure(line_buffering=True)  # each line at once, to a pipe too
    asyncio.run(main(args.host, args.port, args.address))
