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
  message LimitOverrunError { int64 consumed = 1; bool found = 2; }
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
