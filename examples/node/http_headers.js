#!/usr/bin/env node
'use strict';
// Get HTTP headers, through streammgrd: the asyncio documentation's example
// over the streammgr package. Sends a HEAD request over a connection the
// daemon opens (TLS for https://, done by the daemon and verified against
// --cafile or the system roots, with the URL's host as server name) and
// prints the response header lines (sm.readLine() is asyncio's readline()).
//
//   node http_headers.js unix:/tmp/streammgrd.sock https://example.com/
const fs = require('node:fs');
const { once } = require('node:events');
const { parseArgs } = require('node:util');
const sm = require('streammgr');

const USAGE = 'usage: node http_headers.js [ADDR] URL [--cafile ca.pem]';

async function printHttpHeaders(urlText, cafile, daemon) {
  const url = new URL(urlText);
  let sock;
  if (url.protocol === 'https:') {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const tls = { servername: host };
    if (cafile) tls.ca = fs.readFileSync(cafile, 'latin1');
    sock = sm.connect({ host, port: Number(url.port || 443), tls, daemon });
  } else if (url.protocol === 'http:') {
    sock = sm.connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80), daemon });
  } else {
    throw new Error(`not an http:// or https:// URL: ${urlText}`);
  }
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      process.exitCode = 130;
      sock.destroy();
    });
  }
  await once(sock, 'connect');

  // URL keeps the path and query percent-encoded (a space is %20).
  const query = `HEAD ${url.pathname || '/'}${url.search} HTTP/1.0\r\nHost: ${url.host}\r\n\r\n`;
  sock.write(query, 'latin1');
  for (;;) {
    const line = await sm.readLine(sock);
    if (line.length === 0) break;

    const text = line.toString('latin1').trimEnd();
    if (text) console.log(`HTTP header> ${text}`);
  }

  // Ignore the body, close the socket
  sock.end();
  await once(sock, 'close');
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { cafile: { type: 'string' } },
});
let daemon = process.env.STREAMMGR_ADDR;
if (positionals.length === 2) daemon = positionals.shift();
if (!daemon || positionals.length !== 1) {
  console.error(`${USAGE}\nno daemon address or URL: pass unix:/path or host:port first (or set STREAMMGR_ADDR), then the URL`);
  process.exit(2);
}
printHttpHeaders(positionals[0], values.cafile, daemon).catch((err) => {
  if (process.exitCode === 130) return;
  console.error(`error: ${err.message} (${err.code})`);
  process.exitCode = 1;
});
