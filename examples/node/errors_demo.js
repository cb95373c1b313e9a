#!/usr/bin/env node
'use strict';
// asyncio's read exceptions, back from streammgrd:
// 1. readuntil over the reader's limit: the daemon answers RESOURCE_EXHAUSTED
//    with the grpc-status-details-bin trailer holding ErrorInfo{reason:
//    LIMIT_OVERRUN} and streammgr.v1.LimitOverrunError{consumed}; the client
//    throws LimitOverrunError. The data stays buffered.
// 2. readexactly past EOF: the daemon answers incomplete = true with the
//    partial bytes; the client throws IncompleteReadError.
//
//   node errors_demo.js unix:/tmp/streammgrd.sock
const sm = require('./streammgr');

const USAGE = 'usage: node errors_demo.js [ADDR]';

async function demo(client) {
  const [{ reader, writer }, { writer: peer }] = await client.openPair({ limit: 8 });
  // On a failure or Ctrl-C, abort both ends.
  await sm.aborting([writer, peer], () => readErrors(reader, writer, peer));
}

async function readErrors(reader, writer, peer) {
  const chunk = Buffer.from('0123456789ABCDEF'); // 16 bytes, no newline, limit 8
  await peer.write(chunk);
  await peer.drain();
  try {
    await reader.readuntil('\n');
    throw new Error('readuntil: expected LimitOverrunError');
  } catch (err) {
    if (!(err instanceof sm.LimitOverrunError)) throw err;
    console.log(`ReadUntil over the limit: ${err.grpcStatus} ${err.reason} consumed=${err.consumed}`);
    console.log(`  details: ${JSON.stringify(err.details)}`);
  }

  // Nothing was lost: the bytes are still there.
  const kept = await reader.readexactly(chunk.length);
  console.log(`data kept: ${sm.pyRepr(kept.toString())}`);

  await peer.write(Buffer.from('abc'));
  await peer.close(); // the peer closes: EOF after "abc"
  await peer.waitClosed();
  try {
    await reader.readexactly(10);
    throw new Error('readexactly: expected IncompleteReadError');
  } catch (err) {
    if (!(err instanceof sm.IncompleteReadError)) throw err;
    console.log(`ReadExactly past EOF: incomplete partial=${sm.pyRepr(err.partial.toString())} expected=${err.expected}`);
    console.log(`  threw ${err.name}: ${err.message}`);
  }

  await writer.close();
  await writer.waitClosed();
}

sm.run(async () => {
  const { address } = sm.parseArgs(process.argv.slice(2), USAGE);
  const client = new sm.Client(address);
  try {
    await demo(client);
  } finally {
    client.close();
  }
});
