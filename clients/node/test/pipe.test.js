'use strict';
// 64 MiB through the daemon, each way and both ways at once, to a plain
// TCP peer in another process; every byte is checked by its SHA-256, and
// the throughput is printed (MB/s, 10^6 bytes per second).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');
const sm = require('..');
const { startDaemon, startPeer, event, withTimeout, randomFile, hashStream, streamInfo } = require('./helpers');

const SIZE = 64 << 20;
let daemon;
let tmp;
let fileA;
let fileB;

test.before(async () => {
  daemon = await startDaemon();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smpipe'));
  fileA = randomFile(tmp, SIZE, 1);
  fileB = randomFile(tmp, SIZE, 2);
});

test.after(async () => {
  await daemon.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * Runs p; if it fails, the socket's and the daemon's flow-control state
 * go into the test's diagnostics before the failure is passed on.
 */
async function watching(t, sock, p) {
  try {
    return await p;
  } catch (err) {
    const st = sock._sm;
    const { info, buffered } = await streamInfo(daemon, sock.streamId).catch(() => ({}));
    t.diagnostic(
      `state: ${JSON.stringify({
        inOffset: st.inOffset, pushed: st.pushed, acked: st.acked, queued: st.queued, wantRead: st.wantRead,
        outSent: st.outSent, written: st.written, outBytes: st.outBytes, writableLength: sock.writableLength,
        readableLength: sock.readableLength, eofReceived: st.eofReceived, writeEofSent: st.writeEofSent,
      })} daemon: ${JSON.stringify({ buffered, ...info })}`,
    );
    throw err;
  }
}

const mbps = (bytes, ms) => (bytes / 1e6 / (ms / 1000)).toFixed(0);

function connect(port, extra = {}) {
  const sock = sm.connect({ host: '127.0.0.1', port, daemon: daemon.addr, ...extra });
  return sock;
}

/** Resolves once sock emitted 'close', checking it closed without error. */
async function closed(sock) {
  if (sock.closed) return;
  const [hadError] = await event(sock, 'close', "the socket's 'close'");
  assert.equal(hadError, false);
}

test('upload: a 64 MiB file piped into the socket reaches the peer intact', async (t) => {
  const peer = await startPeer('sink');
  t.after(() => peer.stop());
  const sock = connect(peer.port);
  await event(sock, 'connect');
  sock.resume(); // the peer's EOF after its report
  const start = process.hrtime.bigint();
  await withTimeout(pipeline(fs.createReadStream(fileA.path, { highWaterMark: 1 << 20 }), sock), 'the upload');
  const got = await peer.next('the peer to hash the upload');
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.equal(got.bytes, SIZE);
  assert.equal(got.sha256, fileA.sha256);
  await closed(sock);
  assert.equal(sock.bytesWritten, SIZE);
  t.diagnostic(`upload: ${SIZE >> 20} MiB in ${ms.toFixed(0)} ms: ${mbps(SIZE, ms)} MB/s`);
});

test('download: a 64 MiB file the peer sends arrives intact', async (t) => {
  const peer = await startPeer('source', [fileB.path]);
  t.after(() => peer.stop());
  const sock = connect(peer.port);
  await event(sock, 'connect');
  const start = process.hrtime.bigint();
  const got = await withTimeout(hashStream(sock), 'the download');
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.equal(got.bytes, SIZE);
  assert.equal(got.sha256, fileB.sha256);
  assert.equal(sock.bytesRead, SIZE);
  await closed(sock); // allowHalfOpen false: our side ended after the peer's
  t.diagnostic(`download: ${SIZE >> 20} MiB in ${ms.toFixed(0)} ms: ${mbps(SIZE, ms)} MB/s`);
});

test('both ways at once: 64 MiB up and 64 MiB down, independent streams', async (t) => {
  const peer = await startPeer('sinksource', [fileB.path]);
  t.after(() => peer.stop());
  const sock = connect(peer.port, { allowHalfOpen: true });
  await event(sock, 'connect');
  const start = process.hrtime.bigint();
  const down = hashStream(sock);
  let downMs;
  down.then(() => (downMs = Number(process.hrtime.bigint() - start) / 1e6));
  const up = pipeline(fs.createReadStream(fileA.path, { highWaterMark: 1 << 20 }), sock);
  await withTimeout(up, 'the upload');
  const [gotDown, report] = await Promise.all([withTimeout(down, 'the download'), peer.next('the peer to finish')]);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.equal(report.bytes, SIZE);
  assert.equal(report.sha256, fileA.sha256);
  assert.equal(gotDown.bytes, SIZE);
  assert.equal(gotDown.sha256, fileB.sha256);
  await closed(sock);
  t.diagnostic(
    `both ways: ${SIZE >> 20} MiB each way in ${ms.toFixed(0)} ms: ${mbps(SIZE, ms)} MB/s each way ` +
      `(download done after ${downMs.toFixed(0)} ms)`,
  );
});

test('echo: a 64 MiB file through an echo peer comes back intact (both ways at once)', async (t) => {
  const peer = await startPeer('echo');
  t.after(() => peer.stop());
  const sock = connect(peer.port, { allowHalfOpen: true });
  await event(sock, 'connect');
  const start = process.hrtime.bigint();
  const back = hashStream(sock);
  await watching(t, sock, withTimeout(pipeline(fs.createReadStream(fileA.path, { highWaterMark: 1 << 20 }), sock), 'the upload'));
  const got = await watching(t, sock, withTimeout(back, 'the echo'));
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.equal(got.bytes, SIZE);
  assert.equal(got.sha256, fileA.sha256);
  await closed(sock);
  t.diagnostic(`echo: ${SIZE >> 20} MiB out and back in ${ms.toFixed(0)} ms: ${mbps(SIZE, ms)} MB/s each way (${sock._sm.resumes} stalls resumed)`);
});

test('attaching again mid-transfer (what breaks a stall) loses and duplicates nothing', async (t) => {
  const peer = await startPeer('sinksource', [fileB.path]);
  t.after(() => peer.stop());
  const sock = connect(peer.port, { allowHalfOpen: true });
  await event(sock, 'connect');
  const st = sock._sm;
  let next = 4 << 20;
  sock.on('data', () => {
    // Every 4 MiB received, while bytes are unaccepted too: resume.
    if (st.inOffset >= next && !st.resuming && sock._canSend()) {
      next += 4 << 20;
      sock._resume();
    }
  });
  const down = hashStream(sock);
  const up = pipeline(fs.createReadStream(fileA.path, { highWaterMark: 1 << 20 }), sock);
  await watching(t, sock, withTimeout(up, 'the upload'));
  const [gotDown, report] = await watching(t, sock, Promise.all([withTimeout(down, 'the download'), peer.next('the peer to finish')]));
  assert.equal(report.bytes, SIZE);
  assert.equal(report.sha256, fileA.sha256);
  assert.equal(gotDown.bytes, SIZE);
  assert.equal(gotDown.sha256, fileB.sha256);
  assert.equal(sock.bytesRead, SIZE);
  assert.ok(st.resumes >= 8, `resumed ${st.resumes} times`);
  await closed(sock);
  t.diagnostic(`resumed ${st.resumes} times`);
});
