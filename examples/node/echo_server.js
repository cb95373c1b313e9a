#!/usr/bin/env node
'use strict';
// TCP echo server using streams, through streammgrd: the asyncio
// documentation's example over the streammgr package. sm.createServer() is
// net.createServer() with the listening socket owned by the daemon: it
// listens and accepts, and each connection arrives as a socket. Any TCP
// client can talk to it (nc 127.0.0.1 8888). SIGINT or SIGTERM closes the
// server and aborts the connections still being served (none is left open
// in the daemon), then the program exits 0.
//
//   node echo_server.js unix:/tmp/streammgrd.sock --port 8888
const { parseArgs } = require('node:util');
const sm = require('streammgr');

const USAGE = 'usage: node echo_server.js [ADDR] [--host 127.0.0.1] [--port 8888]  (port 0 picks a free one)';
const repr = (s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

async function handleEcho(sock) {
  const data = await sm.read(sock, 100);
  const message = data.toString();
  const addr = `${sock.remoteAddress}:${sock.remotePort}`;

  console.log(`Received ${repr(message)} from ${addr}`);

  console.log(`Send: ${repr(message)}`);
  console.log('Close the connection');
  sock.end(data);
  sock.resume(); // to the peer's EOF: both sides ended, the daemon's stream is closed
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8888' },
  },
});
const daemon = positionals[0] ?? process.env.STREAMMGR_ADDR;
if (!daemon || positionals.length > 1) {
  console.error(`${USAGE}\nno daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR`);
  process.exit(2);
}

const server = sm.createServer({ daemon }, (sock) => {
  sock.on('error', (err) => console.error(`${sock.remoteAddress}:${sock.remotePort}: ${err.message}`));
  handleEcho(sock).catch((err) => {
    console.error(`handler: ${err.message}`);
    sock.destroy();
  });
});
server.on('error', (err) => {
  console.error(`error: ${err.message} (${err.code})`);
  process.exit(1);
});
server.listen(Number(values.port), values.host, () => {
  const { address, port } = server.address();
  console.log(`Serving on ${address}:${port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(undefined, { abortClients: true }));
}
