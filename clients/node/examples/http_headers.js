#!/usr/bin/env node
'use strict';
// Get HTTP headers, Node style, over a connection streammgrd opens: the
// asyncio documentation's example. Sends a HEAD request (TLS made by the
// daemon for https://, verified against --cafile or the system roots) and
// prints the response's header lines, read with readLine().
//
//   STREAMMGR_ADDR=unix:/tmp/sm.sock node http_headers.js http://127.0.0.1:8080/ [--cafile ca.pem]
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const sm = require('..');

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { daemon: { type: 'string' }, cafile: { type: 'string' } },
});
if (positionals.length !== 1) {
  console.error('usage: node http_headers.js URL [--cafile ca.pem] [--daemon ADDR]');
  process.exit(2);
}

async function printHttpHeaders(urlText) {
  const url = new URL(urlText);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const https = url.protocol === 'https:';
  if (!https && url.protocol !== 'http:') throw new Error(`not an http:// or https:// URL: ${urlText}`);
  const sock = sm.connect({
    host,
    port: Number(url.port || (https ? 443 : 80)),
    daemon: args.daemon,
    tls: https ? { servername: host, ca: args.cafile ? fs.readFileSync(args.cafile) : undefined } : undefined,
  });
  await new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.write(`HEAD ${url.pathname || '/'}${url.search} HTTP/1.0\r\nHost: ${url.host}\r\n\r\n`, 'latin1');
  for (;;) {
    const raw = await sock.readLine();
    const line = raw.toString('latin1').trimEnd();
    if (!line) break; // the blank line after the headers, or EOF
    console.log(`HTTP header> ${line}`);
  }
  // Ignore the body, close the socket.
  sock.destroy();
}

printHttpHeaders(positionals[0]).catch((err) => {
  console.error(`error: ${err.message}${err.code ? ` (${err.code})` : ''}`);
  process.exit(1);
});
