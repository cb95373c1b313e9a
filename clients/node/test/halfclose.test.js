'use strict';
// Half-close as net.Socket does it: end() sends EOF (write_eof) while the
// socket goes on reading; with allowHalfOpen false (the default) the
// peer's EOF ends our side too.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const sm = require('..');
const { startDaemon, event, waitFor, withTimeout, streamInfo } = require('./helpers');

let daemon;
test.before(async () => {
  daemon = await startDaemon();
});
test.after(() => daemon.stop());

async function peerServer(onConnection) {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  server.listen(0, '127.0.0.1');
  await event(server, 'listening');
  return server;
}

/** Collects a readable to its end as a string. */
function collect(readable) {
  return new Promise((resolve, reject) => {
    let s = '';
    readable.setEncoding('utf8');
    readable.on('data', (d) => (s += d));
    readable.once('end', () => resolve(s));
    readable.once('error', reject);
  });
}

test("end() delivers EOF to the peer; the peer's answer is still read", async (t) => {
  const events = [];
  const server = await peerServer(async (c) => {
    const request = await collect(c); // to the client's EOF
    events.push('peer end');
    // Answer after the EOF, in several writes, then end.
    c.write(`got ${request.length} bytes: ${request}\n`);
    c.write('more after your EOF\n');
    c.end('bye\n');
  });
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr, allowHalfOpen: true });
  const closed = event(sock, 'close');
  sock.on('finish', () => events.push('finish'));
  sock.on('end', () => events.push('end'));
  await event(sock, 'connect');
  const answer = collect(sock);
  sock.end('request');
  assert.equal(await withTimeout(answer, 'the answer'), 'got 7 bytes: request\nmore after your EOF\nbye\n');
  const [hadError] = await closed;
  assert.equal(hadError, false);
  assert.ok(events.indexOf('finish') < events.indexOf('end'), `order: ${events}`);
  assert.ok(events.includes('peer end'));
  assert.equal(sock.readyState, 'closed');
  const { info } = await streamInfo(daemon, sock.streamId);
  assert.ok(!info || info.state === 'closed' || info.state === 'closing', `daemon state ${info && info.state}`);
});

test('readLine after end(): a line protocol that half-closes first', async (t) => {
  const server = await peerServer(async (c) => {
    const lines = (await collect(c)).split('\n').filter(Boolean);
    for (const l of lines) c.write(`${l.toUpperCase()}\n`);
    c.end();
  });
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr, allowHalfOpen: true });
  const closed = event(sock, 'close');
  await event(sock, 'connect');
  sock.end('one\ntwo\nthree\n');
  assert.equal(String(await sock.readLine()), 'ONE\n');
  assert.equal(String(await sock.readLine()), 'TWO\n');
  assert.equal(String(await sock.readLine()), 'THREE\n');
  assert.equal((await sock.readLine()).length, 0, 'empty at EOF');
  await closed;
});

test("allowHalfOpen false: the peer's EOF ends our side too", async (t) => {
  let peerGotEnd;
  const peerEnd = new Promise((r) => (peerGotEnd = r));
  const server = await peerServer((c) => {
    c.on('end', peerGotEnd);
    c.resume();
    c.end('peer speaks first and ends\n');
  });
  t.after(() => server.close());
  const sock = sm.connect({ host: '127.0.0.1', port: server.address().port, daemon: daemon.addr });
  const closed = event(sock, 'close');
  const got = await withTimeout(collect(sock), 'the peer to end');
  assert.equal(got, 'peer speaks first and ends\n');
  await withTimeout(peerEnd, 'the peer to see our EOF');
  const [hadError] = await closed;
  assert.equal(hadError, false);
});

test('an accepted connection half-closes too (server side)', async (t) => {
  const server = sm.createServer({ allowHalfOpen: true, daemon: daemon.addr }, async (c) => {
    const request = await collect(c);
    c.end(`echo after EOF: ${request}`);
  });
  server.listen(0);
  await event(server, 'listening');
  t.after(() => new Promise((r) => server.close(r)));
  const c = net.connect({ port: server.address().port, host: '127.0.0.1', allowHalfOpen: true });
  await event(c, 'connect');
  const answer = collect(c);
  c.end('ping');
  assert.equal(await withTimeout(answer, 'the answer'), 'echo after EOF: ping');
  await waitFor(async () => (await server.getConnections(() => {}), server._connections.size === 0), 'the server connection to close');
});
