'use strict';
// createServer through the daemon: many connections at once (more than one
// gRPC connection's worth of calls), from plain net clients and from
// streammgr clients, a Unix-socket server, close() semantics.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const path = require('node:path');
const sm = require('..');
const { startDaemon, event, when, waitFor, withTimeout } = require('./helpers');

let daemon;
test.before(async () => {
  daemon = await startDaemon();
});
test.after(() => daemon.stop());

function listen(server, ...args) {
  server.listen(...args);
  return event(server, 'listening');
}

function closeServer(server) {
  return withTimeout(new Promise((resolve) => server.close(resolve)), 'the server to close');
}

/** Collects a readable to its end. */
function collect(readable) {
  return new Promise((resolve, reject) => {
    const parts = [];
    readable.on('data', (b) => parts.push(b));
    readable.once('end', () => resolve(Buffer.concat(parts)));
    readable.once('error', reject);
  });
}

test('300 connections at once to an echo server, each echoed intact', async () => {
  const N = 300;
  const BATCH = 50; // below the daemon's accept queue (128), whatever the machine's load
  const server = sm.createServer({ daemon: daemon.addr, allowHalfOpen: true }, (sock) => sock.pipe(sock));
  await listen(server, 0, '127.0.0.1');
  const { port, address, family } = server.address();
  assert.equal(address, '127.0.0.1');
  assert.equal(family, 'IPv4');
  let accepted = 0;
  server.on('connection', () => accepted++);

  const clients = [];
  const results = [];
  for (let i = 0; i < N; i += BATCH) {
    for (let j = i; j < Math.min(N, i + BATCH); j++) {
      const payload = crypto.randomBytes(16 << 10);
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      clients.push(c);
      results.push(
        collect(c).then((got) => {
          assert.ok(got.equals(payload), `connection ${j}: echo differs`);
          return got.length;
        }),
      );
      // Held open: the client writes now but ends only once all are connected.
      c.write(payload);
    }
    // The next batch once the server has claimed this one.
    await waitFor(() => accepted >= Math.min(N, i + BATCH), `the server to accept ${Math.min(N, i + BATCH)}`);
  }
  const conns = await new Promise((resolve) => server.getConnections((_, n) => resolve(n)));
  assert.equal(conns, N, 'every connection open at once');
  const info = (await daemon.client.listServers()).servers.find((s) => s.server_id === server.serverId);
  assert.equal(info.accepted, N);
  assert.equal(info.rejected, 0);
  // More Attach calls than one gRPC connection carries: the client spread them.
  assert.ok(server._client.channels.length >= Math.ceil(N / server._client.callsPerChannel));
  for (const c of clients) c.end();
  const lengths = await withTimeout(Promise.all(results), 'every echo');
  assert.equal(lengths.reduce((a, b) => a + b, 0), N * (16 << 10));
  await closeServer(server);
  assert.equal(server.listening, false);
});

test('streammgr clients to a streammgr server: 50 line echoes, both ends through the daemon', async () => {
  const server = sm.createServer({ daemon: daemon.addr }, async (sock) => {
    for (;;) {
      const line = await sock.readLine();
      if (line.length === 0) break;
      sock.write(line.toString().toUpperCase());
    }
    sock.end();
  });
  await listen(server, { port: 0, host: '127.0.0.1' });
  const { port } = server.address();
  const one = async (i) => {
    const sock = sm.connect({ port, host: '127.0.0.1', daemon: daemon.addr });
    const closed = event(sock, 'close');
    await event(sock, 'connect');
    assert.equal(sock.remotePort, port);
    assert.equal(sock.remoteAddress, '127.0.0.1');
    assert.equal(typeof sock.localPort, 'number');
    for (let k = 0; k < 5; k++) {
      sock.write(`hello ${i} ${k}\n`);
      assert.equal(String(await sock.readLine()), `HELLO ${i} ${k}\n`);
    }
    sock.end();
    assert.equal((await sock.readLine()).length, 0);
    await closed;
  };
  await withTimeout(Promise.all(Array.from({ length: 50 }, (_, i) => one(i))), 'the 50 clients');
  await closeServer(server);
});

test('a Unix socket server: listen({path}), address() is the path', async () => {
  const p = path.join(daemon.dir, 'echo.sock');
  const server = sm.createServer({ daemon: daemon.addr }, (sock) => sock.pipe(sock));
  await listen(server, { path: p });
  assert.equal(server.address(), p);
  const c = net.connect(p);
  const got = collect(c);
  c.end('over a Unix socket');
  assert.equal(String(await withTimeout(got, 'the echo')), 'over a Unix socket');
  await closeServer(server);
});

test("close() stops accepting, and 'close' waits for the open connections", async () => {
  let serverSide;
  const server = sm.createServer({ daemon: daemon.addr, allowHalfOpen: true }, (sock) => {
    serverSide = sock;
    sock.resume();
  });
  await listen(server, 0);
  const { port } = server.address();
  const c = net.connect(port, '127.0.0.1');
  await waitFor(() => serverSide, 'the connection');
  let closed = false;
  const closing = new Promise((resolve) => server.close(() => resolve((closed = true))));
  // The listener is gone (new connections are refused) ...
  await waitFor(async () => {
    const servers = (await daemon.client.listServers()).servers;
    return !servers.some((s) => s.server_id === server.serverId && s.state === 'serving');
  }, 'the daemon to stop listening');
  const refused = net.connect(port, '127.0.0.1');
  const [ev, err] = await when(refused, ['connect', 'error']);
  assert.equal(ev, 'error');
  assert.equal(err.code, 'ECONNREFUSED');
  // ... but 'close' waits for the connection still open.
  assert.equal(closed, false);
  serverSide.write('still here');
  assert.equal(String((await when(c, 'data'))[1]), 'still here');
  c.end();
  serverSide.end();
  await withTimeout(closing, "the server's 'close'");
});

test('maxConnections: connections past it are dropped', async () => {
  const server = sm.createServer({ daemon: daemon.addr }, (sock) => sock.resume());
  server.maxConnections = 1;
  await listen(server, 0);
  const { port } = server.address();
  const first = net.connect(port, '127.0.0.1');
  await waitFor(() => server._connections.size === 1, 'the first connection');
  const dropped = when(server, 'drop');
  const second = net.connect(port, '127.0.0.1');
  second.on('error', () => {});
  await dropped;
  await when(second, ['end', 'close', 'error'], 'the second connection to be dropped');
  first.end();
  await closeServer(server);
});
