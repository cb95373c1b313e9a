#!/usr/bin/env python3
"""TCP echo server using streams, through streammgrd.

The asyncio documentation's "TCP echo server using streams": the daemon
listens and accepts; this program takes each connection as it arrives (the
Serve server-streaming RPC) and echoes what it reads. Any TCP client can
talk to it (nc 127.0.0.1 8888). SIGINT or SIGTERM closes the server.

    .venv/bin/python echo_server.py unix:/tmp/streammgrd.sock --port 8888
"""

import argparse
import asyncio

import streammgr_client as sm


async def handle_echo(reader: sm.StreamReader, writer: sm.StreamWriter) -> None:
    data = await reader.read(100)
    message = data.decode()
    addr = await writer.get_extra_info("peername")

    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    await writer.write(data)
    await writer.drain()

    print("Close the connection")
    await writer.close()
    await writer.wait_closed()


async def main(args: argparse.Namespace) -> None:
    async with sm.Client(args.address) as client:
        server = await client.start_server(args.host, args.port)

        addrs = ", ".join(str(sock) for sock in server.sockets)
        print(f"Serving on {addrs}")

        try:
            await server.serve_forever(handle_echo)
        except asyncio.CancelledError:
            pass  # SIGINT/SIGTERM: the way to stop a server, exit 0
        finally:
            # Stop listening and abort the connections still being served,
            # so none is left open in the daemon.
            await server.close(abort_clients=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sm.add_address_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8888, help="port (default 8888; 0 picks a free one)")
    sm.run(main(sm.parse_args(parser)))
