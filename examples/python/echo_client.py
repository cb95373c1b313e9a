#!/usr/bin/env python3
"""TCP echo client using streams, through streammgrd.

The asyncio documentation's "TCP echo client using streams", with the socket
owned by the daemon:

    .venv/bin/python echo_client.py unix:/tmp/streammgrd.sock --port 8888
"""

import argparse

import streammgr_client as sm


async def tcp_echo_client(client: sm.Client, message: str, host: str, port: int) -> None:
    reader, writer = await client.open_connection(host, port)
    async with sm.aborting(writer):  # on a failure or Ctrl-C, abort the stream
        print(f"Send: {message!r}")
        await writer.write(message.encode())
        await writer.drain()

        data = await reader.read(100)
        print(f"Received: {data.decode()!r}")

        print("Close the connection")
        await writer.close()
        await writer.wait_closed()


async def main(args: argparse.Namespace) -> None:
    async with sm.Client(args.address) as client:
        await tcp_echo_client(client, args.message, args.host, args.port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sm.add_address_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="echo server host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8888, help="echo server port (default 8888)")
    parser.add_argument("--message", default="Hello World!", help="what to send (default 'Hello World!')")
    sm.run(main(sm.parse_args(parser)))
