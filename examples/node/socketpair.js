#!/usr/bin/env node
'use strict';
// Waiting for data on a socket pair, through streammgrd: the daemon makes a
// connected pair (OpenPair); "abc" is written on one end and read from the
// other, as in the asyncio documentation's socketpair example.
//
//   node socketpair.js unix:/tmp/streammgrd.sock
const sm = require('./streammgr');

const USAGE = 'usage: node socketpair.js [ADDR]';

async function waitForData(client) {
  // Create a pair of connected streams (socket.socketpair() in the original).
  const [{ reader, writer }, { writer: wwriter }] = await client.openPair();
  // On a failure or Ctrl-C, abort both ends.
  await sm.aborting([writer, wwriter], async () => {
    // Simulate the reception of data from the network.
    await wwriter.write(Buffer.from('abc'));

    // Wait for data
    const data = await reader.read(100);

    // Got data, we are done: close the streams
    console.log(`Received: ${sm.pyRepr(data.toString())}`);
    await writer.close();
    await writer.waitClosed();

    // Close the second end as well
    await wwriter.close();
    await wwriter.waitClosed();
  });
}

sm.run(async () => {
  const { address } = sm.parseArgs(process.argv.slice(2), USAGE);
  const client = new sm.Client(address);
  try {
    await waitForData(client);
  } finally {
    client.close();
  }
});
