'use strict';
// Tests of streammgr.js: the error decoding on hand-made trailers, and the
// client against a real streammgrd: the one at $STREAMMGR_ADDR (the Go
// end-to-end test sets it), else one built with `go build` for this run.
// Run: npm test (or node --test test/).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const sm = require('../streammgr');

// An encoder independent of streammgr.js's decoder.
const root = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message Any { string type_url = 1; bytes value = 2; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  message LimitOverrunError { int64 consumed = 1; bool found = 2; int64 next_offset = 3; }
`, { keepCase: true }).root;
const T = (name) => root.lookupType(`google.rpc.${name}`);
const pack = (typeName, type, obj) => ({
  type_url: `type.googleapis.com/${typeName}`,
  value: type.encode(type.create(obj)).finish(),
});

function fakeError(code, message, details) {
  const md = new grpc.Metadata();
  md.set('grpc-status-details-bin', Buffer.from(T('Status').encode(T('Status').create({ code, message, details })).finish()));
  return Object.assign(new Error(`${code} ${message}`), { code, details: message, metadata: md });
}

test('LIMIT_OVERRUN decodes to LimitOverrunError with consumed', () => {
  const err = sm.translateError(
    fakeError(grpc.status.RESOURCE_EXHAUSTED, 'Separator is not found, and chunk exceed the limit', [
      pack('google.rpc.ErrorInfo', T('ErrorInfo'), { reason: 'LIMIT_OVERRUN', domain: 'streammgr' }),
      pack('streammgr.v1.LimitOverrunError', T('LimitOverrunError'), { consumed: 42 }),
    ]),
  );
  assert.ok(err instanceof sm.LimitOverrunError);
  assert.ok(err instanceof sm.StreammgrError);
  assert.equal(err.consumed, 42);
  assert.equal(err.grpcStatus, 'RESOURCE_EXHAUSTED');
  assert.equal(err.reason, 'LIMIT_OVERRUN');
  assert.equal(err.message, 'Separator is not found, and chunk exceed the limit');
});

test('LINE_TOO_LONG carries the next offset; OFFSET_BEHIND its metadata', () => {
  const err = sm.translateError(
    fakeError(grpc.status.RESOURCE_EXHAUSTED, 'Separator is not found, and chunk exceed the limit', [
      pack('google.rpc.ErrorInfo', T('ErrorInfo'), { reason: 'LINE_TOO_LONG', domain: 'streammgr' }),
      pack('streammgr.v1.LimitOverrunError', T('LimitOverrunError'), { consumed: 5, next_offset: 14 }),
    ]),
  );
  assert.equal(err.reason, 'LINE_TOO_LONG');
  assert.equal(err.nextOffset, 14);
  const behind = sm.translateError(
    fakeError(grpc.status.OUT_OF_RANGE, 'offset 0 is behind', [
      pack('google.rpc.ErrorInfo', T('ErrorInfo'), { reason: 'OFFSET_BEHIND', domain: 'streammgr', metadata: { earliest_offset: '3' } }),
    ]),
  );
  assert.deepEqual(behind.metadata, { earliest_offset: '3' });
  assert.equal(behind.nextOffset, undefined);
});

test('what is retried: transport failures and the attempt timeout, never the daemon\'s own errors', () => {
  const withReason = (code, reason) =>
    sm.translateError(fakeError(code, 'x', [pack('google.rpc.ErrorInfo', T('ErrorInfo'), { reason, domain: 'streammgr' })]));
  const bare = (code) => sm.translateError(Object.assign(new Error('x'), { code, details: 'x', metadata: new grpc.Metadata() }));
  const { UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED } = grpc.status;
  assert.equal(sm.isRetryable(bare(UNAVAILABLE), false), true);
  assert.equal(sm.isRetryable(withReason(UNAVAILABLE, 'CONNECTION_RESET'), false), false);
  assert.equal(sm.isRetryable(withReason(UNAVAILABLE, 'SHUTTING_DOWN'), true), false);
  assert.equal(sm.isRetryable(bare(DEADLINE_EXCEEDED), true), true);
  assert.equal(sm.isRetryable(withReason(DEADLINE_EXCEEDED, 'DEADLINE_EXCEEDED'), true), true);
  assert.equal(sm.isRetryable(bare(DEADLINE_EXCEEDED), false), false);
  assert.equal(sm.isRetryable(withReason(DEADLINE_EXCEEDED, 'IO_TIMEOUT'), true), false);
  assert.equal(sm.isRetryable(bare(CANCELLED), true), true);
  assert.equal(sm.isRetryable(bare(CANCELLED), false), false);
  assert.equal(sm.isRetryable(withReason(RESOURCE_EXHAUSTED, 'WRITE_BUFFER_FULL'), true), false);
  assert.equal(sm.isRetryable(withReason(grpc.status.ABORTED, 'READ_SUPERSEDED'), false), true);
  assert.equal(sm.isRetryable(new DOMException('aborted', 'AbortError'), true), false);
});

test('ErrorInfo metadata and unknown details', () => {
  const err = sm.translateError(
    fakeError(grpc.status.UNAVAILABLE, 'connection reset', [
      pack('google.rpc.ErrorInfo', T('ErrorInfo'), { reason: 'CONNECTION_RESET', domain: 'streammgr', metadata: { errno: '104' } }),
      { type_url: 'type.googleapis.com/example.Unknown', value: Buffer.from([1, 2]) },
    ]),
  );
  assert.ok(!(err instanceof sm.LimitOverrunError));
  assert.equal(err.reason, 'CONNECTION_RESET');
  assert.equal(err.errno, 104);
  assert.equal(err.toString(), 'StreammgrError: UNAVAILABLE CONNECTION_RESET: connection reset');
  assert.deepEqual(err.details[1], { '@type': 'type.googleapis.com/example.Unknown', value: Buffer.from([1, 2]) });
});

test('an error without details keeps its status', () => {
  const err = sm.translateError(Object.assign(new Error('x'), { code: 14, details: 'no daemon', metadata: new grpc.Metadata() }));
  assert.equal(err.grpcStatus, 'UNAVAILABLE');
  assert.equal(err.reason, '');
  assert.deepEqual(err.details, []);
});

test('daemon addresses', () => {
  assert.equal(sm.daemonTarget('unix:/tmp/x.sock'), 'unix:///tmp/x.sock');
  assert.equal(sm.daemonTarget('unix:///tmp/x.sock'), 'unix:///tmp/x.sock');
  assert.throws(() => sm.daemonTarget('unix:@abs'), /abstract Unix socket addresses are not supported/);
  assert.equal(sm.daemonTarget('127.0.0.1:7000'), '127.0.0.1:7000');
});

test('the first argument is the address when it starts with unix:, even with STREAMMGR_ADDR set', () => {
  const saved = process.env.STREAMMGR_ADDR;
  process.env.STREAMMGR_ADDR = 'unix:/from/env.sock';
  try {
    for (const a of ['unix:///tmp/x.sock', 'unix:/tmp/x.sock', '127.0.0.1:7000']) {
      assert.deepEqual(sm.parseArgs([a, 'http://h/'], ''), { address: a, positional: ['http://h/'], options: {} });
    }
    assert.equal(sm.parseArgs(['http://h/'], '').address, 'unix:/from/env.sock');
  } finally {
    if (saved === undefined) delete process.env.STREAMMGR_ADDR;
    else process.env.STREAMMGR_ADDR = saved;
  }
});

// The daemon.
let address = process.env.STREAMMGR_ADDR;
let daemon = null;
let tmp = null;
let client = null;

before(async () => {
  if (!address) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sm')); // short: socket paths are limited to 108 bytes
    const bin = path.join(tmp, 'streammgrd');
    execFileSync('go', ['build', '-o', bin, './cmd/streammgrd'], { cwd: path.resolve(__dirname, '../../..'), stdio: 'inherit' });
    const sock = path.join(tmp, 'd.sock');
    daemon = spawn(bin, ['--listen', `unix:${sock}`], { stdio: 'ignore' });
    for (let i = 0; !fs.existsSync(sock); i++) {
      if (i > 300) throw new Error('streammgrd did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    address = `unix:${sock}`;
  }
  client = new sm.Client(address);
});

after(() => {
  if (client) client.close();
  if (daemon) daemon.kill('SIGTERM');
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('readexactly past EOF throws IncompleteReadError with the partial bytes', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair();
  await peer.write('abc');
  await peer.close();
  await assert.rejects(reader.readexactly(10), (err) => {
    assert.ok(err instanceof sm.IncompleteReadError);
    assert.deepEqual(err.partial, Buffer.from('abc'));
    assert.equal(err.expected, 10);
    return true;
  });
  assert.equal(await reader.atEof(), true);
  await writer.close();
});

test('readuntil over the limit throws LimitOverrunError and keeps the data', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair({ limit: 8 });
  await peer.write('0123456789ABCDEF');
  await peer.drain();
  await assert.rejects(reader.readuntil('\n'), (err) => {
    assert.ok(err instanceof sm.LimitOverrunError);
    assert.equal(err.grpcCode, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(err.consumed, 16);
    return true;
  });
  assert.equal((await reader.readexactly(16)).toString(), '0123456789ABCDEF');
  await writer.close();
  await peer.close();
});

test('readuntil at EOF and several separators', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair();
  await peer.write('a|b;c');
  await peer.writeEof();
  assert.equal((await reader.readuntil('|')).toString(), 'a|');
  assert.equal((await reader.readuntil(['X', ';'])).toString(), 'b;');
  await assert.rejects(reader.readuntil('|'), (err) => {
    assert.ok(err instanceof sm.IncompleteReadError);
    assert.equal(err.partial.toString(), 'c');
    assert.equal(err.expected, null);
    return true;
  });
  await writer.close();
  await peer.close();
});

test('a line over the limit is LINE_TOO_LONG; lines iterate', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair({ limit: 4 });
  await peer.write('much too long\none\ntwo\n');
  await peer.writeEof();
  await assert.rejects(reader.readline(), (err) => err.reason === 'LINE_TOO_LONG');
  const lines = [];
  for await (const line of reader) lines.push(line.toString());
  assert.deepEqual(lines, ['one\n', 'two\n']);
  await writer.close();
  await peer.close();
});

test('connection refused', async () => {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  await assert.rejects(client.openConnection('127.0.0.1', port), (err) => {
    assert.equal(err.reason, 'CONNECTION_REFUSED');
    assert.equal(err.grpcStatus, 'UNAVAILABLE');
    return true;
  });
});

test('server: accept, serve, and a plain Node client', async () => {
  const server = await client.startServer('127.0.0.1', 0);
  const port = Number(server.sockets[0].split(':').pop());
  const talk = (msg) =>
    new Promise((resolve, reject) => {
      const chunks = [];
      const c = net.connect(port, '127.0.0.1', () => c.write(msg));
      c.on('data', (d) => chunks.push(d));
      c.on('end', () => {
        c.end();
        resolve(Buffer.concat(chunks).toString());
      });
      c.on('error', reject);
    });
  try {
    // Accept claims one connection.
    const first = talk('one');
    const { reader, writer } = await server.accept(10000);
    assert.equal((await reader.readexactly(3)).toString(), 'one');
    const [host, peerPort] = await writer.getExtraInfo('peername');
    assert.equal(host, '127.0.0.1');
    assert.ok(peerPort > 0);
    await writer.write('ONE');
    await writer.close();
    await writer.waitClosed();
    assert.equal(await first, 'ONE');
    // serve() streams connections as they arrive.
    const second = talk('two');
    for await (const conn of server.serve()) {
      assert.match(conn.peername, /^127\.0\.0\.1:\d+$/);
      await conn.writer.write(await conn.reader.read(100));
      await conn.writer.close();
      break;
    }
    assert.equal(await second, 'two');
    await assert.rejects(server.accept(50), (err) => err.reason === 'ACCEPT_TIMEOUT');
  } finally {
    await server.close();
  }
});

// Offsets and retries.

/** Polls the async predicate cond until it holds (no fixed sleeps). */
async function until(cond, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function streamInfo(c, streamId) {
  const { streams } = await c.call('ListStreams', {});
  const s = streams.find((x) => x.stream_id === streamId);
  assert.ok(s, `stream ${streamId} not in ListStreams`);
  return s;
}

const buffered = (streamId, n) => async () => (await streamInfo(client, streamId)).buffered === n;
const consumed = (streamId, n) => async () => (await streamInfo(client, streamId)).bytes_in === n;
// n bytes reached the daemon: buffered, or consumed by a read that was given
// up on (the daemon keeps them for a read at its offset).
const arrived = (streamId, n) => async () => {
  const s = await streamInfo(client, streamId);
  return s.buffered + s.bytes_in === n;
};

/**
 * A TCP proxy on 127.0.0.1 to the daemon. down: new connections are closed
 * at once (counted in refused), as a daemon that is not there. hold: the
 * daemon's bytes to the client are dropped (an answer lost on the way);
 * only useful before breakAll(), which destroys every proxied connection.
 */
class Proxy {
  constructor(daemonAddress) {
    this.daemonAddress = daemonAddress;
    this.down = false;
    this.hold = false;
    this.refused = 0;
    this.accepted = 0;
    this.sockets = new Set();
  }

  start() {
    this.server = net.createServer((c) => this.handle(c));
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${this.server.address().port}`));
    });
  }

  handle(c) {
    c.on('error', () => {});
    if (this.down) {
      this.refused++;
      c.destroy();
      return;
    }
    this.accepted++;
    const a = this.daemonAddress;
    const d = a.startsWith('unix:')
      ? net.connect(a.slice('unix:'.length).replace(/^\/\//, ''))
      : net.connect(Number(a.slice(a.lastIndexOf(':') + 1)), a.slice(0, a.lastIndexOf(':')));
    d.on('error', () => {});
    for (const s of [c, d]) {
      this.sockets.add(s);
      s.on('close', () => {
        c.destroy();
        d.destroy();
      });
    }
    c.on('data', (b) => d.write(b));
    d.on('data', (b) => {
      if (!this.hold) c.write(b);
    });
  }

  breakAll() {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  close() {
    this.breakAll();
    return new Promise((resolve) => this.server.close(resolve));
  }
}

/** Breaks the proxy's connections and waits until client c has seen it. */
async function disconnect(proxy, c) {
  proxy.breakAll();
  const channel = c.stub.getChannel();
  await until(async () => channel.getConnectivityState(false) !== grpc.connectivityState.READY, 'the channel to see the break');
}

/** A proxy and a client through it; the test's client is the direct one. */
async function throughProxy(t) {
  const proxy = new Proxy(address);
  const c = new sm.Client(await proxy.start(), { retries: 30, backoffMs: 20 });
  t.after(async () => {
    c.close();
    await proxy.close();
  });
  return { proxy, c };
}

test('offsets advance with reads and writes', async () => {
  const [{ reader, writer }, { reader: pr, writer: peer }] = await client.openPair({ limit: 8 });
  assert.deepEqual([reader.offset, writer.offset, pr.offset, peer.offset], [0, 0, 0, 0]);
  await peer.write('abc');
  await peer.writelines(['de', 'f|']);
  assert.equal(peer.offset, 7);
  assert.equal((await reader.readexactly(2)).toString(), 'ab');
  assert.equal(reader.offset, 2);
  assert.equal((await reader.readuntil('|')).toString(), 'cdef|');
  assert.equal(reader.offset, 7);
  await peer.write('0123456789');
  await assert.rejects(reader.readuntil('|'), sm.LimitOverrunError);
  assert.equal(reader.offset, 7); // nothing consumed
  await reader.readexactly(10);
  await peer.write('xy');
  await peer.writeEof();
  await assert.rejects(reader.readexactly(5), sm.IncompleteReadError);
  assert.equal(reader.offset, 19);
  assert.equal((await streamInfo(client, reader.streamId)).bytes_in, 19);
  await writer.close();
  await peer.close();
});

test('a read aborted by its signal loses nothing', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair();
  await assert.rejects(reader.read(100, { signal: AbortSignal.timeout(50) }), { name: 'TimeoutError' });
  assert.equal(reader.offset, 0);
  const ac = new AbortController();
  const read = reader.readline({ signal: ac.signal });
  ac.abort();
  await assert.rejects(read, { name: 'AbortError' });
  // The peer sends after the timeout: the next read gets every byte.
  await peer.write('after the timeout');
  await until(arrived(reader.streamId, 17), 'the bytes to arrive');
  assert.equal((await reader.read(100)).toString(), 'after the timeout');
  assert.equal(reader.offset, 17);
  await writer.close();
  await peer.close();
});

test('a second read while one waits is refused locally', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair();
  const first = reader.read(10);
  await assert.rejects(reader.readline(), /already waiting/);
  await peer.write('x');
  assert.equal((await first).toString(), 'x');
  await writer.close();
  await peer.close();
});

test('LINE_TOO_LONG moves the offset past the dropped line', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair({ limit: 4 });
  await peer.write('much too long\none\n');
  await assert.rejects(reader.readline(), (err) => err.reason === 'LINE_TOO_LONG' && err.nextOffset === 14);
  assert.equal(reader.offset, 14);
  assert.equal((await reader.readline()).toString(), 'one\n');
  assert.equal(reader.offset, 18);
  await writer.close();
  await peer.close();
});

test('a read at an earlier offset is replayed; out of range offsets', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair();
  await peer.write('abcdef');
  await until(buffered(reader.streamId, 6), 'the bytes to arrive');
  assert.equal((await reader.read(3)).toString(), 'abc');
  reader.offset = 0; // an answer lost on the way
  assert.equal((await reader.read(3)).toString(), 'abc');
  assert.equal((await reader.read(3)).toString(), 'def');
  reader.offset = 0;
  await assert.rejects(reader.read(3), (err) => {
    assert.equal(err.grpcStatus, 'OUT_OF_RANGE');
    assert.equal(err.reason, 'OFFSET_BEHIND');
    assert.equal(err.metadata.earliest_offset, '3');
    return true;
  });
  assert.equal(reader.offset, 0);
  reader.offset = 99;
  await assert.rejects(reader.read(3), (err) => err.reason === 'OFFSET_AHEAD' && err.metadata.next_offset === '6');
  await writer.close();
  await peer.close();
});

test('a write retried at the same offset is accepted once; writes keep their order', async () => {
  const [{ reader, writer }, { writer: peer }] = await client.openPair();
  await peer.write('once');
  peer.offset = 0; // as if the answer had been lost
  await peer.write('once');
  assert.equal(peer.offset, 4);
  await Promise.all([peer.write('1'), peer.write('2'), peer.writelines(['3', '4'])]);
  assert.equal(peer.offset, 8);
  await peer.writeEof();
  assert.equal((await reader.read()).toString(), 'once1234');
  await writer.close();
  await peer.close();
});

test('a read whose answer is lost is retried and replayed', async (t) => {
  const { proxy, c } = await throughProxy(t);
  const [{ reader, writer }, { writer: p }] = await c.openPair();
  const peer = new sm.StreamWriter(client, p.streamId);
  proxy.hold = true;
  const read = reader.read(100);
  await peer.write('lost once');
  await until(consumed(reader.streamId, 9), 'the daemon to answer the read');
  proxy.hold = false;
  proxy.breakAll();
  assert.equal((await read).toString(), 'lost once');
  assert.equal(reader.offset, 9);
  assert.ok(proxy.accepted >= 2);
  await peer.write(', then more');
  assert.equal((await reader.readexactly(11)).toString(), ', then more');
  await writer.close();
  await peer.close();
});

test('an aborted read whose answer the daemon sent loses nothing', async (t) => {
  const { proxy, c } = await throughProxy(t);
  const [{ reader, writer }, { writer: p }] = await c.openPair();
  const peer = new sm.StreamWriter(client, p.streamId);
  proxy.hold = true;
  const ac = new AbortController();
  const read = reader.read(100, { signal: ac.signal });
  await peer.write('consumed, never seen');
  await until(consumed(reader.streamId, 20), 'the daemon to answer the read');
  ac.abort();
  await assert.rejects(read, { name: 'AbortError' });
  assert.equal(reader.offset, 0);
  proxy.hold = false;
  proxy.breakAll();
  assert.equal((await reader.read(100)).toString(), 'consumed, never seen');
  assert.equal(reader.offset, 20);
  await writer.close();
  await peer.close();
});

test('calls are retried while the daemon cannot be reached', async (t) => {
  const { proxy, c } = await throughProxy(t);
  const [{ reader, writer }, { writer: p }] = await c.openPair();
  const peer = new sm.StreamWriter(client, p.streamId);
  await writer.write('ping');
  proxy.down = true;
  await disconnect(proxy, c);
  const read = reader.read(100);
  await until(async () => proxy.refused >= 1, 'the client to retry');
  await peer.write('pong');
  proxy.down = false;
  assert.equal((await read).toString(), 'pong');
  assert.equal(reader.offset, 4);
  proxy.down = true;
  await disconnect(proxy, c);
  const refused = proxy.refused;
  const write = writer.write('!');
  await until(async () => proxy.refused > refused, 'the client to retry the write');
  proxy.down = false;
  await write;
  assert.equal(writer.offset, 5);
  assert.equal((await streamInfo(client, writer.streamId)).bytes_out, 5);
  await writer.close();
  await peer.close();
});

test('an attempt that runs out of the client timeout is retried, then fails', async (t) => {
  const c = new sm.Client(address, { timeoutMs: 100, retries: 1000, backoffMs: 10 });
  t.after(() => c.close());
  const [{ reader, writer }, { writer: peer }] = await c.openPair();
  let attempts = 0;
  const real = c.stub.Read.bind(c.stub);
  c.stub.Read = (...args) => {
    attempts++;
    return real(...args);
  };
  const read = reader.read(100);
  await until(async () => attempts >= 2, 'an attempt to time out');
  await peer.write('in time');
  assert.equal((await read).toString(), 'in time');
  c.retries = 1;
  // grpc-js reports its deadline as DEADLINE_EXCEEDED, or as CANCELLED when
  // the deadline's cancel reaches the stream first.
  await assert.rejects(reader.read(100), (err) => ['DEADLINE_EXCEEDED', 'CANCELLED'].includes(err.grpcStatus));
  assert.equal(reader.offset, 7);
  await peer.write('!');
  assert.equal((await reader.read(100)).toString(), '!');
  await writer.close();
  await peer.close();
});

test('the daemon\'s own errors are not retried', async () => {
  const [{ writer }, { writer: peer }] = await client.openPair();
  let attempts = 0;
  const real = client.stub.Drain.bind(client.stub);
  client.stub.Drain = (...args) => {
    attempts++;
    return real(...args);
  };
  try {
    await writer.abort();
    await assert.rejects(writer.drain(), (err) => err.reason === 'CONNECTION_LOST');
    assert.equal(attempts, 1);
  } finally {
    delete client.stub.Drain;
  }
  await peer.close();
});
