#!/usr/bin/env node
'use strict';
// TCP echo client using streams, through streammgrd: the asyncio
// documentation's example with the socket owned by the daemon.
//
//   node echo_client.js unix:/tmp/streammgrd.sock --port 8888
const sm = require('./streammgr');

const USAGE = "usage: node echo_client.js [ADDR] [--host 127.0.0.1] [--port 8888] [--message 'Hello World!']";

async function tcpEchoClient(client, message, host, port) {
  const { reader, writer } = await client.openConnection(host, port);
  // On a failure or Ctrl-C, abort the stream.
  await sm.aborting([writer], async () => {
    console.log(`Send: ${sm.pyRepr(message)}`);
    await writer.write(Buffer.from(message));
    await writer.drain();

    const data = await reader.read(100);
    console.log(`Received: ${sm.pyRepr(data.toString())}`);

    console.log('Close the connection');
    await writer.close();
    await writer.waitClosed();
  });
}

sm.run(async () => {
  const { address, options } = sm.parseArgs(process.argv.slice(2), USAGE);
  const client = new sm.Client(address);
  try {
    await tcpEchoClient(client, options.message ?? 'Hello World!', options.host ?? '127.0.0.1', Number(options.port ?? 8888));
  } finally {
    client.close();
  }
});
