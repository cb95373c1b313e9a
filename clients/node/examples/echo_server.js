#!/usr/bin/env node
'use strict';
// TCP echo server, Node style, with the listening socket owned by
// streammgrd: each connection's first message is printed and sent back,
// then the connection is closed (the asyncio documentation's echo server).
// Any TCP client can talk to it: nc 127.0.0.1 8888.
//
//   STREAMMGR_ADDR=unix:/tmp/sm.sock node echo_server.js [--host 127.0.0.1] [--port 8888] [--count N]
//
// --port 0 lets the daemon pick a port (printed); --count N closes the
// server after N connections; SIGINT or SIGTERM closes it too.
const { parseArgs } = require('node:util');
const sm = require('..');

const { values: args } = parseArgs({
  options: {
    daemon: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8888' },
    count: { type: 'string' },
  },
});

let served = 0;
const server = sm.createServer({ daemon: args.daemon }, (sock) => {
  const peer = `${sock.remoteAddress}:${sock.remotePort}`;
  sock.on('error', (err) => console.error(`${peer}: ${err.message}`));
  sock.once('data', (data) => {
    console.log(`Received ${JSON.stringify(data.toString())} from ${peer}`);
    console.log(`Send: ${JSON.stringify(data.toString())}`);
    console.log('Close the connection');
    sock.end(data);
    sock.resume();
  });
  sock.on('close', () => {
    if (args.count && ++served >= Number(args.count)) server.close();
  });
});
server.on('error', (err) => {
  console.error(`error: ${err.message} (${err.code})`);
  process.exit(1);
});
server.listen(Number(args.port), args.host, () => {
  const { address, port } = server.address();
  console.log(`Serving on ${address}:${port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close());
