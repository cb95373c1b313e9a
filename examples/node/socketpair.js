#!/usr/bin/env node
'use strict';
// Register an open socket to wait for data using streams, through
// streammgrd: the asyncio documentation's socketpair example, over the
// streammgr package. sm.socketPair() is the daemon's OpenPair: two connected
// sockets; "abc" is written on one and read from the other.
//
//   node socketpair.js unix:/tmp/streammgrd.sock
const { once } = require('node:events');
const { parseArgs } = require('node:util');
const sm = require('streammgr');

const USAGE = 'usage: node socketpair.js [ADDR]';
const repr = (s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

async function waitForData(daemon) {
  // Create a pair of connected sockets.
  const [rsock, wsock] = await sm.socketPair({ daemon });
  // Ctrl-C or SIGTERM: abort both ends in the daemon, then exit 130.
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      process.exitCode = 130;
      rsock.destroy();
      wsock.destroy();
    });
  }

  // Simulate the reception of data from the network
  wsock.write('abc');

  // Wait for data
  const data = await sm.read(rsock, 100);

  // Got data, we are done: close both ends
  console.log(`Received: ${repr(data.toString())}`);
  const closed = [once(rsock, 'close'), once(wsock, 'close')];
  rsock.end();
  wsock.end();
  rsock.resume();
  wsock.resume();
  await Promise.all(closed);
}

const { positionals } = parseArgs({ allowPositionals: true, options: {} });
const daemon = positionals[0] ?? process.env.STREAMMGR_ADDR;
if (!daemon || positionals.length > 1) {
  console.error(`${USAGE}\nno daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR`);
  process.exit(2);
}
waitForData(daemon).catch((err) => {
  if (process.exitCode === 130) return;
  console.error(`error: ${err.message} (${err.code})`);
  process.exitCode = 1;
});
