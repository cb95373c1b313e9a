'use strict';
// Test fixtures: a real streammgrd (the binary in $STREAMMGR_BIN, else one
// built from the repository with `go build`), started on a Unix socket in
// a fresh /tmp/smXXXXXX directory and stopped after the test file, plus
// small helpers that wait for events and conditions (never for a guessed
// time).
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { once } = require('node:events');
const sm = require('..');

const REPO = path.resolve(__dirname, '..', '..', '..');
// Every wait in the tests is bounded by this: a hung test fails instead of
// hanging. Passing runs take a small fraction of it.
const WAIT_MS = 60000;

let builtBin = null;

/** The daemon binary: $STREAMMGR_BIN, or `go build` of ./cmd/streammgrd. */
function daemonBin() {
  if (process.env.STREAMMGR_BIN) return process.env.STREAMMGR_BIN;
  if (builtBin) return builtBin;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smbin'));
  const bin = path.join(dir, 'streammgrd');
  execFileSync('go', ['build', '-o', bin, './cmd/streammgrd'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
  builtBin = bin;
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return bin;
}

/**
 * Starts a daemon on unix:/tmp/smXXXXXX/d.sock (plus any --listen in
 * extraArgs) and resolves once it logs that every listener listens.
 * Returns {addr, listens, dir, proc, client, log(), stop()}.
 */
async function startDaemon(extraArgs = []) {
  const dir = fs.mkdtempSync('/tmp/sm');
  const sock = path.join(dir, 'd.sock');
  const addr = `unix:${sock}`;
  const args = ['--listen', addr, '--log-level', 'info', ...extraArgs];
  const listeners = args.filter((a) => a === '--listen').length;
  const proc = spawn(daemonBin(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  // However this process ends (a failed hook, process.exit), the daemon goes too.
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  proc.once('exit', () => process.removeListener('exit', killOnExit));
  let log = '';
  const listens = [];
  const listening = new Promise((resolve, reject) => {
    proc.stderr.on('data', (b) => {
      log += b;
      listens.length = 0;
      for (const m of log.matchAll(/msg=listening addr=(\S+)/g)) listens.push(m[1]);
      if (listens.length >= listeners) resolve();
    });
    proc.once('exit', (code, sig) => reject(new Error(`streammgrd exited (${code ?? sig}) before listening:\n${log}`)));
    proc.once('error', reject);
  });
  await withTimeout(listening, 'the daemon to listen');
  const client = new sm.Client({ daemon: addr });
  return {
    addr,
    // Every listener's address as the daemon logged it (tcp:host:port, unix:/path).
    listens,
    dir,
    proc,
    client,
    log: () => log,
    async stop() {
      client.close();
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = once(proc, 'exit');
        proc.kill('SIGTERM');
        await withTimeout(exited, 'the daemon to exit');
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves with p's value, or rejects after WAIT_MS naming what was waited for. */
function withTimeout(p, what, ms = WAIT_MS) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Waits for emitter's event (rejecting on 'error' unless that is the event), bounded. */
function event(emitter, name, what) {
  return withTimeout(once(emitter, name), what || `'${name}'`);
}

/** Resolves with the first of names to be emitted: [name, ...args]; never rejects on 'error'. */
function when(emitter, names, what) {
  const list = Array.isArray(names) ? names : [names];
  return withTimeout(
    new Promise((resolve) => {
      const fns = list.map((n) => {
        const fn = (...args) => {
          list.forEach((m, i) => emitter.removeListener(m, fns[i]));
          resolve([n, ...args]);
        };
        emitter.on(n, fn);
        return fn;
      });
    }),
    what || list.join(' or '),
  );
}

/**
 * Polls cond() (sync or async) until it returns a truthy value; the poll
 * interval is only how often the condition is looked at.
 */
async function waitFor(cond, what, { intervalMs = 10, timeoutMs = WAIT_MS } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A file of n pseudo-random bytes in dir; resolves {path, sha256}. */
function randomFile(dir, n, seed = 1) {
  const file = path.join(dir, `random-${seed}-${n}.bin`);
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'w');
  // A seeded stream: AES-CTR keystream of a key derived from the seed.
  const key = crypto.createHash('sha256').update(`seed ${seed}`).digest();
  const cipher = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zero = Buffer.alloc(1 << 20);
  for (let left = n; left > 0; ) {
    const k = Math.min(left, zero.length);
    const b = cipher.update(zero.subarray(0, k));
    hash.update(b);
    fs.writeSync(fd, b);
    left -= k;
  }
  fs.closeSync(fd);
  return { path: file, sha256: hash.digest('hex'), size: n };
}

/** Hashes a readable to its end: {sha256, bytes}. */
function hashStream(readable) {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    let bytes = 0;
    readable.on('data', (b) => {
      h.update(b);
      bytes += b.length;
    });
    readable.once('end', () => resolve({ sha256: h.digest('hex'), bytes }));
    readable.once('error', reject);
  });
}

/**
 * A peer program in a child process (test/fixtures/peer.js): it listens
 * on 127.0.0.1 and, per connection, does `mode` (see the file). Resolves
 * {port, proc, next(): the next JSON line it prints, stop()}.
 */
async function startPeer(mode, args = []) {
  const proc = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'peer.js'), mode, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = [];
  const waiters = [];
  let buf = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (s) => {
    buf += s;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (waiters.length) waiters.shift()(line);
      else lines.push(line);
    }
  });
  const next = (what = 'a line from the peer') =>
    withTimeout(new Promise((resolve) => (lines.length ? resolve(lines.shift()) : waiters.push(resolve))), what);
  const first = await next('the peer to listen');
  return {
    port: first.port,
    proc,
    next,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = once(proc, 'exit');
        proc.kill('SIGTERM');
        await withTimeout(exited, 'the peer to exit');
      }
    },
  };
}

/** The daemon's StreamInfo of a socket's stream, and the budget figures. */
async function streamInfo(daemon, streamId) {
  const r = await daemon.client.listStreams();
  return { info: r.streams.find((s) => s.stream_id === streamId) || null, buffered: r.buffered_bytes, list: r };
}

module.exports = {
  REPO,
  WAIT_MS,
  daemonBin,
  startDaemon,
  startPeer,
  withTimeout,
  event,
  when,
  waitFor,
  randomFile,
  hashStream,
  streamInfo,
};
