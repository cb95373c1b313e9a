#!/usr/bin/env node
'use strict';
// Get HTTP headers, through streammgrd: the asyncio documentation's example.
// Sends a HEAD request over a connection the daemon opens (TLS for https://,
// verified against --cafile or the system roots, with the URL's host as
// server name) and prints the response header lines.
//
//   node http_headers.js unix:/tmp/streammgrd.sock https://example.com/ [--cafile ca.pem]
const fs = require('node:fs');
const sm = require('./streammgr');

const USAGE = 'usage: node http_headers.js [ADDR] URL [--cafile ca.pem]';

async function printHttpHeaders(client, urlText, cafile) {
  const url = new URL(urlText);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1'); // IPv6 without brackets
  let conn;
  if (url.protocol === 'https:') {
    const caPem = cafile ? fs.readFileSync(cafile, 'latin1') : undefined;
    conn = await client.openConnection(hostname, Number(url.port || 443), { ssl: true, serverHostname: hostname, caPem });
  } else if (url.protocol === 'http:') {
    conn = await client.openConnection(hostname, Number(url.port || 80));
  } else {
    throw new Error(`not an http:// or https:// URL: ${urlText}`);
  }
  const { reader, writer } = conn;
  // On a failure or Ctrl-C, abort the stream.
  await sm.aborting([writer], async () => {
    // url.host keeps an explicit port and IPv6 brackets, as Host wants.
    const query = `HEAD ${url.pathname || '/'}${url.search} HTTP/1.0\r\nHost: ${url.host}\r\n\r\n`;
    await writer.write(Buffer.from(query, 'latin1'));
    for (;;) {
      const raw = await reader.readline();
      if (raw.length === 0) break;

      const line = raw.toString('latin1').trimEnd();
      if (line) console.log(`HTTP header> ${line}`);
    }

    // Ignore the body, close the socket
    await writer.close();
    await writer.waitClosed();
  });
}

sm.run(async () => {
  const { address, positional, options } = sm.parseArgs(process.argv.slice(2), USAGE);
  if (positional.length !== 1) throw new Error(USAGE);
  const client = new sm.Client(address);
  try {
    await printHttpHeaders(client, positional[0], options.cafile);
  } finally {
    client.close();
  }
});
