'use strict';
// Finding the daemon and who we are to it: the address from an option,
// $STREAMMGR_ADDR or the daemon's default socket; a bearer token from an
// option or $STREAMMGR_TOKEN, on a Unix socket and on TCP.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const sm = require('..');
const { grpcTarget } = require('../lib/client');
const { startDaemon, event } = require('./helpers');

const TOKEN = 'node-client-test-token-0123456789';
let daemon;
let tcpAddr;

test.before(async () => {
  const dir = fs.mkdtempSync('/tmp/smtok');
  const tokens = path.join(dir, 'tokens');
  fs.writeFileSync(tokens, `${TOKEN},alice\n`, { mode: 0o600 });
  daemon = await startDaemon(['--listen', '127.0.0.1:0', '--insecure-tcp', '--token-file', tokens]);
  tcpAddr = daemon.listens.find((a) => a.startsWith('tcp:')).slice('tcp:'.length);
  fs.rmSync(dir, { recursive: true, force: true });
});
test.after(() => daemon.stop());

test('defaultAddress: $STREAMMGR_ADDR, else $XDG_RUNTIME_DIR, else /tmp/streammgrd-$UID', () => {
  assert.equal(sm.defaultAddress({ STREAMMGR_ADDR: 'unix:/x.sock', XDG_RUNTIME_DIR: '/run/user/7' }), 'unix:/x.sock');
  assert.equal(sm.defaultAddress({ XDG_RUNTIME_DIR: '/run/user/7' }), 'unix:/run/user/7/streammgrd.sock');
  assert.equal(sm.defaultAddress({}), `unix:/tmp/streammgrd-${process.getuid()}/streammgrd.sock`);
  assert.equal(grpcTarget('unix:/a/b.sock'), 'unix:///a/b.sock');
  assert.equal(grpcTarget('unix:///a/b.sock'), 'unix:///a/b.sock');
  assert.equal(grpcTarget('127.0.0.1:7000'), '127.0.0.1:7000');
  assert.throws(() => grpcTarget('unix:@abstract'), /abstract/);
});

async function echoPeer(t) {
  const server = net.createServer((c) => c.pipe(c));
  server.listen(0, '127.0.0.1');
  await event(server, 'listening');
  t.after(() => server.close());
  return server.address().port;
}

/** Connects with opts, echoes a line, and resolves the stream's owner as the daemon names it. */
async function ownerOf(port, opts, client) {
  const sock = sm.connect({ host: '127.0.0.1', port, ...opts });
  const closed = event(sock, 'close');
  await event(sock, 'connect');
  sock.write('ping\n');
  assert.equal(String(await sock.readLine()), 'ping\n');
  const r = await client.listStreams();
  const owner = r.streams.find((s) => s.stream_id === sock.streamId).owner;
  sock.destroy();
  await closed;
  return owner;
}

test('$STREAMMGR_ADDR and $STREAMMGR_TOKEN are used when no option is given', async (t) => {
  const port = await echoPeer(t);
  const saved = { addr: process.env.STREAMMGR_ADDR, token: process.env.STREAMMGR_TOKEN };
  t.after(() => {
    for (const [k, v] of [['STREAMMGR_ADDR', saved.addr], ['STREAMMGR_TOKEN', saved.token]]) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  process.env.STREAMMGR_ADDR = daemon.addr;
  delete process.env.STREAMMGR_TOKEN;
  assert.equal(await ownerOf(port, {}, daemon.client), `uid:${process.getuid()}`);
  process.env.STREAMMGR_TOKEN = TOKEN;
  const asAlice = new sm.Client({ daemon: daemon.addr, token: TOKEN });
  t.after(() => asAlice.close());
  // A token names its caller on a Unix socket too.
  assert.equal(await ownerOf(port, {}, asAlice), 'alice');
});

test('a TCP daemon address with a token option; anonymous without one', async (t) => {
  const port = await echoPeer(t);
  const asAlice = new sm.Client({ daemon: tcpAddr, token: TOKEN });
  t.after(() => asAlice.close());
  assert.equal(await ownerOf(port, { daemon: tcpAddr, token: TOKEN }, asAlice), 'alice');
  const anon = new sm.Client({ daemon: tcpAddr, token: '' });
  t.after(() => anon.close());
  assert.equal(await ownerOf(port, { daemon: tcpAddr, token: '' }, anon), 'anonymous');
});

test('an unknown token: UNAUTHENTICATED, as an error code', async (t) => {
  const port = await echoPeer(t);
  const sock = sm.connect({ host: '127.0.0.1', port, daemon: tcpAddr, token: 'not-a-token-of-this-daemon-000' });
  const [err] = await event(sock, 'error');
  assert.equal(err.code, 'ERR_STREAMMGR_UNAUTHENTICATED');
  assert.equal(err.grpcStatus, 'UNAUTHENTICATED');
});

test("setTimeout: 'timeout' after the socket is idle", async (t) => {
  const port = await echoPeer(t);
  const sock = sm.connect({ host: '127.0.0.1', port, daemon: daemon.addr });
  const closed = event(sock, 'close');
  await event(sock, 'connect');
  sock.setTimeout(30);
  await event(sock, 'timeout');
  assert.equal(sock.timeout, 30);
  sock.setTimeout(0);
  sock.destroy();
  await closed;
});
