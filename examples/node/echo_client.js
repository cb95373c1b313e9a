#!/usr/bin/env node
'use strict';
// TCP echo client using streams, through streammgrd: the asyncio
// documentation's example, over the streammgr package (sm.connect() is
// net.connect() with the socket owned by the daemon; sm.read() is asyncio's
// reader.read()).
//
//   node echo_client.js unix:/tmp/streammgrd.sock --port 8888
const { once } = require('node:events');
const { parseArgs } = require('node:util');
const sm = require('streammgr');

const USAGE = "usage: node echo_client.js [ADDR] [--host 127.0.0.1] [--port 8888] [--message 'Hello World!']";
const repr = (s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`; // as Python prints a str

async function tcpEchoClient(message, host, port, daemon) {
  const sock = sm.connect({ host, port, daemon });
  // Ctrl-C or SIGTERM: abort the stream in the daemon, then exit 130.
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      process.exitCode = 130;
      sock.destroy();
    });
  }
  await once(sock, 'connect');

  console.log(`Send: ${repr(message)}`);
  sock.write(message);

  const data = await sm.read(sock, 100);
  console.log(`Received: ${repr(data.toString())}`);

  console.log('Close the connection');
  sock.end();
  sock.resume(); // to the peer's EOF: both sides ended, the daemon's stream is closed
  await once(sock, 'close');
}

function args() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8888' },
      message: { type: 'string', default: 'Hello World!' },
    },
  });
  const daemon = positionals[0] ?? process.env.STREAMMGR_ADDR;
  if (!daemon || positionals.length > 1) {
    console.error(`${USAGE}\nno daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR`);
    process.exit(2);
  }
  return { ...values, daemon };
}

const a = args();
tcpEchoClient(a.message, a.host, Number(a.port), a.daemon).catch((err) => {
  if (process.exitCode === 130) return; // interrupted
  console.error(`error: ${err.message} (${err.code})`);
  process.exitCode = 1;
});
