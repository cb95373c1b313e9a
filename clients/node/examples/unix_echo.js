#!/usr/bin/env node
'use strict';
// Unix sockets, Node style, both ends owned by streammgrd: an echo server
// listening on a Unix socket path and a client connecting to it; then a
// connected pair made by the daemon (socket.socketpair() in asyncio's
// example) with "abc" written on one end and read on the other.
//
//   STREAMMGR_ADDR=unix:/tmp/sm.sock node unix_echo.js [--path /tmp/echo.sock]
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const sm = require('..');

const { values: args } = parseArgs({ options: { daemon: { type: 'string' }, path: { type: 'string' } } });

async function main() {
  const dir = args.path ? null : fs.mkdtempSync(path.join(os.tmpdir(), 'smux'));
  const sockPath = args.path || path.join(dir, 'echo.sock');
  try {
    // The echo server on a Unix path: what a client sends comes back.
    const server = sm.createServer({ daemon: args.daemon }, (conn) => conn.pipe(conn));
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: sockPath }, resolve);
    });
    console.log(`Serving on ${server.address()}`);

    const client = sm.connect({ path: sockPath, daemon: args.daemon });
    await new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    client.end('Hello over a Unix socket');
    const echoed = await sm.read(client); // to EOF
    console.log(`Received: ${JSON.stringify(echoed.toString())}`);
    await new Promise((resolve) => server.close(resolve));

    // A socket pair: write on one end, read on the other.
    const [rsock, wsock] = await sm.socketPair({ daemon: args.daemon });
    wsock.write('abc');
    const data = await sm.read(rsock, 100);
    console.log(`Received: ${JSON.stringify(data.toString())}`);
    rsock.destroy();
    wsock.destroy();
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`error: ${err.message}${err.code ? ` (${err.code})` : ''}`);
  process.exit(1);
});
