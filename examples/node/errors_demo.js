#!/usr/bin/env node
'use strict';
// asyncio's read exceptions, back from streammgrd:
// 1. readuntil over the reader's limit: the daemon answers RESOURCE_EXHAUSTED
//    with the grpc-status-details-bin trailer holding ErrorInfo{reason:
//    LIMIT_OVERRUN} and streammgr.v1.LimitOverrunError{consumed}; the client
//    throws LimitOverrunError. The data stays buffered.
// 2. readexactly past EOF: the daemon answers incomplete = true with the
//    partial bytes; the client throws IncompleteReadError.
// 3. Offsets: a read abandoned by its AbortSignal (AbortSignal.timeout)
//    loses nothing (the reader's offset stays, the next read gets the bytes
//    the peer sends later); a read at an offset already read is answered
//    again (what the client's retry does after a lost answer); offsets
//    outside what the daemon keeps are OUT_OF_RANGE (OFFSET_BEHIND,
//    OFFSET_AHEAD); a write retried at the same offset is accepted once.
//
//   node errors_demo.js unix:/tmp/streammgrd.sock
const sm = require('./streammgr');

const USAGE = 'usage: node errors_demo.js [ADDR]';

async function demo(client) {
  const [{ reader, writer }, { writer: peer }] = await client.openPair({ limit: 8 });
  // On a failure or Ctrl-C, abort both ends.
  await sm.aborting([writer, peer], () => readErrors(reader, writer, peer));
  const [second, { writer: secondPeer }] = await client.openPair();
  await sm.aborting([second.writer, secondPeer], () => offsets(second.reader, second.writer, secondPeer));
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

async function offsets(reader, writer, peer) {
  const repr = (buf) => sm.pyRepr(buf.toString());
  // A read abandoned by its signal: the call is cancelled, the offset stays.
  try {
    await reader.read(100, { signal: AbortSignal.timeout(50) });
    throw new Error('read: expected a timeout, nothing was sent');
  } catch (err) {
    if (err.name !== 'TimeoutError') throw err;
    console.log(`Read timed out after 50 ms: offset still ${reader.offset}`);
  }
  await peer.write('late data');
  console.log(`Peer sent ${sm.pyRepr('late data')} after the timeout`);
  const before = reader.offset;
  const data = await reader.readexactly(9);
  console.log(`Next read at offset ${before}: ${repr(data)}, next offset ${reader.offset}: nothing lost`);

  // An answer lost on the way: the client retries at the offset it had,
  // and the daemon answers with the same bytes.
  reader.offset = 0;
  console.log(`Read again at offset 0 (a lost answer): ${repr(await reader.readexactly(9))} replayed`);
  await peer.write('more');
  let at = reader.offset;
  const more = await reader.readexactly(4);
  console.log(`Read ${repr(more)} at offset ${at}: the bytes before ${at} are acknowledged, next offset ${reader.offset}`);
  at = reader.offset;
  for (const [offset, key] of [[0, 'earliest_offset'], [99, 'next_offset']]) {
    reader.offset = offset;
    try {
      await reader.read(100);
      throw new Error(`read at offset ${offset}: expected OUT_OF_RANGE`);
    } catch (err) {
      if (!(err instanceof sm.StreammgrError)) throw err;
      console.log(`Read at offset ${offset}: ${err.grpcStatus} ${err.reason} ${key}=${err.metadata[key]}`);
    }
  }
  reader.offset = at;

  // A write retried at the same offset (its answer lost) is accepted once.
  const offset = peer.offset;
  for (const attempt of ['', ' again (a retry)']) {
    peer.offset = offset;
    await peer.write('once');
    console.log(`Write ${sm.pyRepr('once')} at offset ${offset}${attempt}: next offset ${peer.offset}`);
  }
  await peer.close();
  await peer.waitClosed();
  console.log(`Received to EOF: ${repr(await reader.read())}`);

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
