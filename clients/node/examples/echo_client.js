#!/usr/bin/env node
'use strict';
// TCP echo client, Node style, with the socket owned by streammgrd: the
// asyncio documentation's first example (open a connection, send a
// message, print the answer, close).
//
//   STREAMMGR_ADDR=unix:/tmp/sm.sock node echo_client.js --port 8888 [--host 127.0.0.1] [--message 'Hello World!']
//
// The daemon's address: --daemon, else $STREAMMGR_ADDR, else the daemon's
// default socket. (From your own project: require('streammgr').)
const { parseArgs } = require('node:util');
const sm = require('..');

const { values: args } = parseArgs({
  options: {
    daemon: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8888' },
    message: { type: 'string', default: 'Hello World!' },
  },
});

const sock = sm.connect({ host: args.host, port: Number(args.port), daemon: args.daemon }, () => {
  console.log(`Send: ${JSON.stringify(args.message)}`);
  sock.write(args.message);
});
let received = '';
sock.setEncoding('utf8');
sock.on('data', (data) => {
  received += data;
  if (received.length >= Buffer.byteLength(args.message)) {
    console.log(`Received: ${JSON.stringify(received)}`);
    console.log('Close the connection');
    sock.end();
  }
});
sock.on('error', (err) => {
  console.error(`error: ${err.message} (${err.code})`);
  process.exitCode = 1;
});
sock.on('close', (hadError) => {
  if (!hadError && received.length === 0) {
    console.error('error: the connection closed before an answer');
    process.exitCode = 1;
  }
});
