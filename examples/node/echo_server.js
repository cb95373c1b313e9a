#!/usr/bin/env node
'use strict';
// TCP echo server using streams, through streammgrd: the daemon listens and
// accepts; this program takes each connection as it arrives (the Serve
// server-streaming RPC) and echoes what it reads. Any TCP client can talk to
// it (nc 127.0.0.1 8888). SIGINT or SIGTERM closes the server.
//
//   node echo_server.js unix:/tmp/streammgrd.sock --port 8888
const sm = require('./streammgr');

const USAGE = 'usage: node echo_server.js [ADDR] [--host 127.0.0.1] [--port 8888]  (port 0 picks a free one)';

async function handleEcho({ reader, writer }) {
  const data = await reader.read(100);
  const message = data.toString();
  const [host, port] = await writer.getExtraInfo('peername');

  console.log(`Received ${sm.pyRepr(message)} from ${host}:${port}`);

  console.log(`Send: ${sm.pyRepr(message)}`);
  await writer.write(data);
  await writer.drain();

  console.log('Close the connection');
  await writer.close();
  await writer.waitClosed();
}

sm.run(async (signal) => {
  const { address, options } = sm.parseArgs(process.argv.slice(2), USAGE);
  const client = new sm.Client(address);
  try {
    const server = await client.startServer(options.host ?? '127.0.0.1', Number(options.port ?? 8888));
    console.log(`Serving on ${server.sockets.join(', ')}`);
    // SIGINT/SIGTERM close the server and abort the connections still
    // being served (none is left open in the daemon); serveForever then
    // returns.
    let closing = null;
    const stop = () => {
      closing ??= server.close({ abortClients: true });
      return closing;
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop);

    try {
      await server.serveForever(handleEcho);
    } finally {
      // The CloseServer answer when we closed it; when serving ended
      // otherwise, close what is left (errors ignored: already closed).
      await (closing ?? server.close({ abortClients: true }).catch(() => {}));
    }
  } finally {
    client.close();
  }
});
