'use strict';
// Errors as Node's net module gives them: ECONNREFUSED, ENOENT, a reset by
// the peer (ECONNRESET), a write to a closed peer (EPIPE/ECONNRESET),
// EADDRINUSE; destroy() aborts the daemon's stream; a daemon that cannot
// be reached.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const sm = require('..');
const { startDaemon, event, when, waitFor, withTimeout, streamInfo } = require('./helpers');

let daemon;
test.before(async () => {
  daemon = await startDaemon();
  process.env.STREAMMGR_ADDR = daemon.addr; // connect() without a daemon option finds it here
});
test.after(() => daemon.stop());

async function peerServer(onConnection) {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  server.listen(0, '127.0.0.1');
  await event(server, 'listening');
  return server;
}

/** A port nothing listens on (one the kernel gave and took back). */
async function closedPort() {
  const s = net.createServer().listen(0, '127.0.0.1');
  await event(s, 'listening');
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Resolves {error, hadError, connected} once the socket closed. */
function outcome(sock) {
  const r = { error: null, hadError: null, connected: false, events: [] };
  sock.on('connect', () => {
    r.connected = true;
    r.events.push('connect');
  });
  sock.on('error', (e) => {
    r.error = e;
    r.events.push('error');
  });
  // Not events.once: it would reject on the 'error' that comes first.
  const closed = new Promise((resolve) => sock.once('close', (hadError) => resolve([hadError])));
  return withTimeout(closed, "the socket's 'close'").then(([hadError]) => {
    r.hadError = hadError;
    r.events.push('close');
    return r;
  });
}

test('ECONNREFUSED, as net.connect reports it', async () => {
  const port = await closedPort();
  const o = await outcome(sm.connect(port, '127.0.0.1', () => assert.fail('connected')));
  assert.equal(o.connected, false);
  assert.deepEqual(o.events, ['error', 'close']);
  assert.equal(o.hadError, true);
  assert.equal(o.error.code, 'ECONNREFUSED');
  assert.equal(o.error.errno, -os.constants.errno.ECONNREFUSED);
  assert.equal(o.error.syscall, 'connect');
  assert.equal(o.error.address, '127.0.0.1');
  assert.equal(o.error.port, port);
  assert.equal(o.error.message, `connect ECONNREFUSED 127.0.0.1:${port}`);
  assert.equal(o.error.reason, 'CONNECTION_REFUSED');
  assert.equal(o.error.grpcStatus, 'UNAVAILABLE');
});

test('ENOENT for a Unix socket path that does not exist', async () => {
  const p = path.join(daemon.dir, 'nobody-here.sock');
  const o = await outcome(sm.connect({ path: p, daemon: daemon.addr }));
  assert.equal(o.error.code, 'ENOENT');
  assert.equal(o.error.syscall, 'connect');
  assert.equal(o.error.address, p);
  assert.equal(o.hadError, true);
});

test('reset by the peer: ECONNRESET after the bytes before it', async (t) => {
  const server = await peerServer((c) => {
    c.write('hello\n');
    c.once('data', () => c.resetAndDestroy()); // RST once the client spoke
  });
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr });
  const done = outcome(sock);
  assert.equal(String(await sock.readLine()), 'hello\n');
  sock.write('go\n');
  const o = await done;
  assert.equal(o.error.code, 'ECONNRESET');
  assert.equal(o.error.errno, -os.constants.errno.ECONNRESET);
  assert.equal(o.error.syscall, 'read');
  assert.equal(o.error.reason, 'CONNECTION_RESET');
  assert.equal(o.hadError, true);
  assert.deepEqual(o.events, ['connect', 'error', 'close']);
});

test('writing to a peer that closed: EPIPE or ECONNRESET', async (t) => {
  const server = await peerServer((c) => c.destroy());
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr, allowHalfOpen: true });
  const done = outcome(sock);
  sock.resume();
  await event(sock, 'connect');
  const piece = Buffer.alloc(64 << 10);
  // The first bytes may still be taken; the peer's RST fails a later write.
  for (let i = 0; i < 1024 && !sock.destroyed; i++) {
    if (!sock.write(piece)) await when(sock, ['drain', 'close']);
  }
  const o = await done;
  assert.ok(['EPIPE', 'ECONNRESET'].includes(o.error && o.error.code), `error ${o.error && o.error.code}`);
  assert.equal(o.hadError, true);
});

test('destroy() aborts the stream: pending writes are discarded, the peer sees it go, no error here', async (t) => {
  let peerSock;
  const server = await peerServer((c) => {
    peerSock = c;
    c.on('error', () => {}); // a reset is fine
    c.pause(); // reads nothing: the client's writes pile up
  });
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr });
  const done = outcome(sock);
  await event(sock, 'connect');
  // More than the kernel buffers, the daemon's write buffer and the write
  // window together can take: some bytes stay pending in the daemon.
  for (let i = 0; i < 1024; i++) sock.write(Buffer.alloc(64 << 10));
  await waitFor(async () => {
    const { info } = await streamInfo(daemon, sock.streamId);
    return info && info.write_buffered > 0;
  }, 'bytes pending in the daemon');
  sock.destroy();
  const o = await done;
  assert.equal(o.error, null);
  assert.equal(o.hadError, false);
  assert.equal(sock.destroyed, true);
  const { info } = await streamInfo(daemon, sock.streamId);
  assert.ok(!info || info.state === 'closed', `daemon state ${info && info.state}`);
  assert.equal(info ? info.write_buffered : 0, 0, 'pending writes discarded');
  // The peer, reading now, sees the connection end (FIN or RST) well
  // before the 64 MiB that were written.
  let got = 0;
  peerSock.on('data', (b) => (got += b.length));
  const gone = when(peerSock, ['end', 'error'], 'the peer to see the connection go');
  peerSock.resume();
  await gone;
  assert.ok(got < 64 << 20, `the peer got ${got} bytes`);
});

test('destroy(err) emits that error, then close(hadError)', async (t) => {
  const server = await peerServer((c) => c.resume());
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr });
  const done = outcome(sock);
  await event(sock, 'connect');
  const err = new Error('mine');
  sock.destroy(err);
  const o = await done;
  assert.equal(o.error, err);
  assert.equal(o.hadError, true);
});

test('destroy() while connecting: the stream Open makes is aborted', async (t) => {
  let peerGone;
  const peerSeen = new Promise((r) => (peerGone = r));
  const server = await peerServer((c) => {
    when(c, ['end', 'error']).then(peerGone);
    c.resume();
  });
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr });
  const done = outcome(sock);
  sock.destroy(); // Open is on its way
  const o = await done;
  assert.equal(o.connected, false);
  assert.equal(o.error, null);
  await withTimeout(peerSeen, 'the peer to see the aborted connection');
  await waitFor(async () => {
    const r = await daemon.client.listStreams();
    return r.streams.every((s) => s.state === 'closed');
  }, 'no stream left open in the daemon');
});

test('a daemon that cannot be reached', async () => {
  const o = await outcome(sm.connect({ host: '127.0.0.1', port: 1, daemon: `unix:${path.join(daemon.dir, 'no-daemon.sock')}` }));
  assert.equal(o.error.code, 'ERR_STREAMMGR_UNAVAILABLE');
  assert.match(o.error.message, /no-daemon\.sock/);
  assert.equal(o.hadError, true);
});

test('EADDRINUSE from listen()', async (t) => {
  const taken = net.createServer().listen(0, '127.0.0.1');
  await event(taken, 'listening');
  t.after(() => taken.close());
  const server = sm.createServer({ daemon: daemon.addr }, () => {});
  server.listen(taken.address().port, '127.0.0.1');
  const [err] = await event(server, 'error');
  assert.equal(err.code, 'EADDRINUSE');
  assert.equal(err.syscall, 'listen');
  assert.equal(err.port, taken.address().port);
  assert.equal(server.listening, false);
  await new Promise((resolve) =>
    server.close((e) => {
      assert.equal(e.code, 'ERR_SERVER_NOT_RUNNING');
      resolve();
    }),
  );
});

test('a daemon error without a socket errno keeps its reason in the code', async () => {
  const err = await sm.attach('s-does-not-exist', { daemon: daemon.addr }).then(
    () => assert.fail('attached'),
    (e) => e,
  );
  assert.equal(err.code, 'ERR_STREAMMGR_STREAM_NOT_FOUND');
  assert.equal(err.grpcStatus, 'NOT_FOUND');
});
