#!/usr/bin/env python3
"""Register an open socket to wait for data using streams, through streammgrd.

The asyncio documentation's socketpair example: the daemon makes a connected
pair (OpenPair); "abc" is written on one end and read from the other.

    .venv/bin/python socketpair.py unix:/tmp/streammgrd.sock
"""

import argparse

import streammgr_client as sm


async def wait_for_data(client: sm.Client) -> None:
    # Create a pair of connected streams (socket.socketpair() in the original).
    (reader, writer), (wreader, wwriter) = await client.open_pair()
    async with sm.aborting(writer, wwriter):  # on a failure or Ctrl-C, abort both
        # Simulate the reception of data from the network.
        await wwriter.write("abc".encode())

        # Wait for data
        data = await reader.read(100)

        # Got data, we are done: close the streams
        print("Received:", data)
        await writer.close()
        await writer.wait_closed()

        # Close the second end as well
        await wwriter.close()
        await wwriter.wait_closed()


async def main(args: argparse.Namespace) -> None:
    async with sm.Client(args.address) as client:
        await wait_for_data(client)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sm.add_address_argument(parser)
    sm.run(main(sm.parse_args(parser)))
