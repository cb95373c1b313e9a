#!/usr/bin/env node
'use strict';
// asyncio's read exceptions through streammgrd, and the daemon's answers
// beneath:
// 1. With the streammgr package, as asyncio raises them: sm.readUntil()
//    over the limit rejects with LimitOverrunError {consumed} (the data
//    stays in the stream), sm.readExactly() past EOF with
//    IncompleteReadError {partial, expected}.
// 2. The same on the wire, with the daemon's unary RPCs (Client.unary() of
//    the package), as the package sends them for you: ReadUntil over the
//    limit answers RESOURCE_EXHAUSTED (reason LIMIT_OVERRUN, detail
//    streammgr.v1.LimitOverrunError{consumed}), and every read and write
//    carries an offset: a read that times out loses nothing (the next read
//    at the same offset gets the bytes the peer sends later), a read at an
//    offset already read is answered again (what a retry after a lost
//    answer does), offsets outside what the daemon keeps are OUT_OF_RANGE
//    (OFFSET_BEHIND, OFFSET_AHEAD), a write retried at the same offset is
//    accepted once.
//
//   node errors_demo.js unix:/tmp/streammgrd.sock
const { once } = require('node:events');
const { parseArgs } = require('node:util');
const sm = require('streammgr');

const USAGE = 'usage: node errors_demo.js [ADDR]';
// What is open, for Ctrl-C or SIGTERM to abort: the package's sockets, and
// the streams of the wire part (ids) with the client that opened them.
const live = { sockets: new Set(), ids: new Set(), client: null };

const repr = (b) => `'${b.toString().replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

async function asyncioErrors(daemon) {
  // A connected pair made by the daemon.
  const [sock, peer] = await sm.socketPair({ daemon });
  live.sockets.add(sock).add(peer);
  try {
    const chunk = Buffer.from('0123456789ABCDEF'); // 16 bytes, no newline, limit 8
    peer.write(chunk);
    try {
      await sm.readUntil(sock, '\n', { limit: 8 });
      throw new Error('readUntil: expected LimitOverrunError');
    } catch (err) {
      if (!(err instanceof sm.LimitOverrunError)) throw err;
      console.log(`readUntil() over the limit: LimitOverrunError consumed=${err.consumed}`);
      console.log(`  threw ${err.name}: ${err.message}`);
    }

    // Nothing was lost: the bytes are still there.
    const kept = await sm.readExactly(sock, chunk.length);
    console.log(`data kept: ${repr(kept)}`);

    peer.end('abc'); // the peer closes its side: EOF after "abc"
    try {
      await sm.readExactly(sock, 10);
      throw new Error('readExactly: expected IncompleteReadError');
    } catch (err) {
      if (!(err instanceof sm.IncompleteReadError)) throw err;
      console.log(`ReadExactly past EOF: incomplete partial=${repr(err.partial)} expected=${err.expected}`);
      console.log(`  threw ${err.name}: ${err.message}`);
    }
    const closed = [once(sock, 'close'), once(peer, 'close')];
    sock.end();
    peer.resume();
    await Promise.all(closed);
  } finally {
    sock.destroy();
    peer.destroy();
    live.sockets.clear();
  }
}

async function onTheWire(client) {
  const close = async (...ids) => {
    for (const id of ids) {
      await client.unary('Close', { stream_id: id });
      await client.unary('WaitClosed', { stream_id: id });
      live.ids.delete(id);
    }
  };

  // ReadUntil over the limit is an error, with the details asyncio needs.
  let pair = await client.unary('OpenPair', { limit: 8 });
  let [sid, peer] = [pair.first_stream_id, pair.second_stream_id];
  live.ids.add(sid).add(peer);
  try {
    await client.unary('Write', { stream_id: peer, data: Buffer.from('0123456789ABCDEF'), offset: 0 });
    await client.unary('Drain', { stream_id: peer });
    try {
      await client.unary('ReadUntil', { stream_id: sid, separator: Buffer.from('\n'), offset: 0 });
      throw new Error('ReadUntil: expected RESOURCE_EXHAUSTED');
    } catch (err) {
      if (!err.grpcStatus) throw err;
      const overrun = err.details.find((d) => d['@type'] === 'type.googleapis.com/streammgr.v1.LimitOverrunError');
      console.log(`ReadUntil over the limit: ${err.grpcStatus} ${err.reason} consumed=${overrun.consumed}`);
      console.log(`  message: ${err.daemonMessage}`);
    }
  } finally {
    await close(sid, peer);
  }

  // Offsets, on a new pair. Both ends start at 0.
  pair = await client.unary('OpenPair', {});
  [sid, peer] = [pair.first_stream_id, pair.second_stream_id];
  live.ids.add(sid).add(peer);
  try {
    const readOffset = await offsets(client, sid, peer);
    await close(peer);
    const r = await client.unary('Read', { stream_id: sid, offset: readOffset }); // no n: to EOF
    console.log(`Received to EOF: ${repr(r.data)}`);
  } finally {
    await close(sid);
  }
}

async function offsets(client, sid, peer) {
  let readOffset = 0;
  let writeOffset = 0;
  const readExactly = async (n, offset) => {
    const r = await client.unary('ReadExactly', { stream_id: sid, n, offset });
    return [r.data, r.next_offset];
  };
  const write = async (data, offset) =>
    (await client.unary('Write', { stream_id: peer, data: Buffer.from(data), offset })).next_offset;

  // A read with a deadline of our own: DEADLINE_EXCEEDED (or CANCELLED, when
  // the daemon, which got the deadline too, resets the call first), and the
  // offset stays.
  const start = Date.now();
  try {
    await client.unary('Read', { stream_id: sid, n: 100, offset: readOffset }, { timeoutMs: 50 });
    throw new Error('Read: expected a timeout, nothing was sent');
  } catch (err) {
    if (err.grpcStatus !== 'DEADLINE_EXCEEDED' && err.grpcStatus !== 'CANCELLED') throw err;
  }
  console.log(`Read timed out after ${Date.now() - start} ms: offset still ${readOffset}`);
  writeOffset = await write('late data', writeOffset);
  console.log(`Peer sent ${repr('late data')} after the timeout`);
  let [data, next] = await readExactly(9, readOffset);
  console.log(`Next read at offset ${readOffset}: ${repr(data)}, next offset ${next}: nothing lost`);

  // An answer lost on the way: a retry sends the offset it had, and the
  // daemon answers with the same bytes.
  [data, readOffset] = await readExactly(9, 0);
  console.log(`Read again at offset 0 (a lost answer): ${repr(data)} replayed`);
  writeOffset = await write('more', writeOffset);
  const at = readOffset;
  [data, readOffset] = await readExactly(4, at);
  console.log(`Read ${repr(data)} at offset ${at}: the bytes before ${at} are acknowledged, next offset ${readOffset}`);

  // The bytes before 9 are gone; the stream has not reached 99.
  for (const [offset, key] of [[0, 'earliest_offset'], [99, 'next_offset']]) {
    try {
      await client.unary('Read', { stream_id: sid, n: 100, offset });
      throw new Error(`Read at offset ${offset}: expected OUT_OF_RANGE`);
    } catch (err) {
      if (!err.grpcStatus) throw err;
      console.log(`Read at offset ${offset}: ${err.grpcStatus} ${err.reason} ${key}=${err.metadata[key]}`);
    }
  }

  // A write retried at the same offset (its answer lost) is accepted once.
  const offset = writeOffset;
  for (const attempt of ['', ' again (a retry)']) {
    writeOffset = await write('once', offset);
    console.log(`Write ${repr('once')} at offset ${offset}${attempt}: next offset ${writeOffset}`);
  }
  return readOffset;
}

async function main(daemon) {
  console.log('== asyncio, through streammgr');
  await asyncioErrors(daemon);
  console.log('== on the wire');
  const client = new sm.Client({ daemon });
  live.client = client;
  try {
    await onTheWire(client);
  } finally {
    client.close();
  }
}

const { positionals } = parseArgs({ allowPositionals: true, options: {} });
const daemon = positionals[0] ?? process.env.STREAMMGR_ADDR;
if (!daemon || positionals.length > 1) {
  console.error(`${USAGE}\nno daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR`);
  process.exit(2);
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const s of live.sockets) s.destroy(); // aborts the stream in the daemon
    const aborts = [...live.ids].map((id) => live.client.unary('Abort', { stream_id: id }));
    Promise.allSettled(aborts).then(() => process.exit(130));
  });
}
main(daemon).catch((err) => {
  console.error(`error: ${err.message} (${err.code})`);
  process.exitCode = 1;
});
