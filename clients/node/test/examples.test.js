'use strict';
// The examples in examples/, each run as its own process against the
// daemon ($STREAMMGR_ADDR) and a local peer, checked by their output and
// exit code.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const path = require('node:path');
const { startDaemon, event, withTimeout } = require('./helpers');

const EXAMPLES = path.resolve(__dirname, '..', 'examples');
let daemon;
test.before(async () => {
  daemon = await startDaemon();
});
test.after(() => daemon.stop());

/** Runs an example; onLine(line, proc) sees its stdout as it comes. Resolves {code, stdout, stderr}. */
function run(script, args = [], { onLine, env = {} } = {}) {
  const proc = spawn(process.execPath, [path.join(EXAMPLES, script), ...args], {
    env: { ...process.env, STREAMMGR_ADDR: daemon.addr, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let pending = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (s) => {
    stdout += s;
    pending += s;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (onLine) onLine(line, proc);
    }
  });
  proc.stderr.on('data', (s) => (stderr += s));
  const done = new Promise((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
  return withTimeout(done, `${script} to finish`);
}

async function localEcho() {
  const server = net.createServer((c) => c.pipe(c));
  server.listen(0, '127.0.0.1');
  await event(server, 'listening');
  return server;
}

test('echo_client.js: sends Hello World! and prints the echo', async (t) => {
  const server = await localEcho();
  t.after(() => server.close());
  const r = await run('echo_client.js', ['--port', String(server.address().port)]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Send: "Hello World!"\nReceived: "Hello World!"\nClose the connection\n');
});

test('echo_client.js: ECONNREFUSED exits non-zero', async () => {
  const s = net.createServer().listen(0, '127.0.0.1');
  await event(s, 'listening');
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  const r = await run('echo_client.js', ['--port', String(port)]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ECONNREFUSED/);
});

test('echo_server.js: serves a plain TCP client and echo_client.js, then exits', async () => {
  const clients = [];
  const r = await run('echo_server.js', ['--port', '0', '--count', '2'], {
    onLine(line) {
      const m = /^Serving on (.*):(\d+)$/.exec(line);
      if (!m) return;
      const port = Number(m[2]);
      // A plain Node TCP client ...
      clients.push(
        new Promise((resolve, reject) => {
          const c = net.connect(port, m[1], () => c.write('plain TCP'));
          let got = '';
          c.on('data', (d) => (got += d));
          c.on('end', () => resolve(got));
          c.on('error', reject);
        }),
      );
      // ... and the example client, through the daemon too.
      clients.push(run('echo_client.js', ['--port', String(port), '--message', 'through the daemon twice']));
    },
  });
  assert.equal(r.code, 0, r.stderr);
  const [plain, example] = await Promise.all(clients);
  assert.equal(plain, 'plain TCP');
  assert.equal(example.code, 0, example.stderr);
  assert.match(example.stdout, /Received: "through the daemon twice"/);
  assert.match(r.stdout, /^Serving on 127\.0\.0\.1:\d+$/m);
  assert.match(r.stdout, /Received "plain TCP" from 127\.0\.0\.1:\d+/);
  assert.match(r.stdout, /Received "through the daemon twice" from 127\.0\.0\.1:\d+/);
});

test('http_headers.js: prints the response headers of a HEAD request', async (t) => {
  const server = http.createServer((req, res) => {
    res.setHeader('X-Streammgr-Test', req.method);
    res.end('body that HEAD does not get');
  });
  server.listen(0, '127.0.0.1');
  await event(server, 'listening');
  t.after(() => server.close());
  const r = await run('http_headers.js', [`http://127.0.0.1:${server.address().port}/some/path?q=1`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^HTTP header> HTTP\/1\.1 200 OK$/m);
  assert.match(r.stdout, /^HTTP header> X-Streammgr-Test: HEAD$/m);
  assert.doesNotMatch(r.stdout, /body that/);
});

function haveOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('http_headers.js over https: TLS made by the daemon, verified against --cafile', { skip: !haveOpenssl() && 'no openssl to make a certificate' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(daemon.dir, 'tls'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    res.setHeader('X-Over', 'tls');
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await event(server, 'listening');
  t.after(() => server.close());
  const url = `https://localhost:${server.address().port}/`;
  const r = await run('http_headers.js', [url, '--cafile', cert]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^HTTP header> X-Over: tls$/m);
  // Without the CA: the daemon's handshake fails, the example says so.
  const bad = await run('http_headers.js', [url]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /TLS_ERROR|certificate/i);
});

test('unix_echo.js: a Unix-socket echo server and client, then a socket pair', async () => {
  const r = await run('unix_echo.js');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Serving on \/.*echo\.sock$/m);
  assert.match(r.stdout, /^Received: "Hello over a Unix socket"$/m);
  assert.match(r.stdout, /^Received: "abc"$/m);
});
