"""CPython asyncio echo client for TestBenchTable (benchtable_test.go).

Usage: echo_client.py HOST PORT SIZE

Connects once, then for each line N read from stdin does N round trips of
SIZE bytes (write, drain, read until SIZE bytes came back) and prints one
line: the N round-trip times in nanoseconds, space separated. An empty
line or EOF on stdin ends it.
"""

import asyncio
import sys
import time


async def main() -> None:
    host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reader, writer = await asyncio.open_connection(host, port)
    payload = b"x" * size
    loop = asyncio.get_running_loop()
    clock = time.perf_counter_ns
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            break
        samples = []
        for _ in range(int(line)):
            t0 = clock()
            writer.write(payload)
            await writer.drain()
            got = 0
            while got < size:
                data = await reader.read(65536)
                if not data:
                    raise EOFError("echo server closed the connection")
                got += len(data)
            samples.append(clock() - t0)
        sys.stdout.write(" ".join(map(str, samples)) + "\n")
        sys.stdout.flush()
    writer.close()
    await writer.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
