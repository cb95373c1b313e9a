'use strict';
// readLine / readExactly / readUntil / read with asyncio's semantics: on
// a plain PassThrough (the helpers work on any Readable) and on a socket
// pair made by the daemon (OpenPair, both ends attached).
const test = require('node:test');
const assert = require('node:assert/strict');
const { PassThrough } = require('node:stream');
const sm = require('..');
const { startDaemon, event, withTimeout } = require('./helpers');

let daemon;
test.before(async () => {
  daemon = await startDaemon();
});
test.after(() => daemon.stop());

const B = (s) => Buffer.from(s);

test('readUntil: the separator included; bytes after it stay for the next read', async () => {
  const s = new PassThrough();
  s.write('abc||def||');
  assert.deepEqual(await sm.readUntil(s, '||'), B('abc||'));
  assert.deepEqual(await sm.readUntil(s, B('||')), B('def||'));
  // A separator split across chunks.
  const p = sm.readUntil(s, '\r\n');
  s.write('ghi\r');
  s.write('\njkl');
  assert.deepEqual(await p, B('ghi\r\n'));
  assert.deepEqual(await sm.read(s, 100), B('jkl'));
});

test('readUntil with several separators: the match that ends first wins (asyncio 3.13)', async () => {
  const s = new PassThrough();
  s.write('xx\r\nyy\n');
  assert.deepEqual(await sm.readUntil(s, ['\n', '\r\n']), B('xx\r\n'));
  assert.deepEqual(await sm.readUntil(s, ['\n', '\r\n']), B('yy\n'));
});

test('readUntil at EOF: IncompleteReadError(partial, expected null), the bytes consumed', async () => {
  const s = new PassThrough();
  s.end('no separator here');
  const err = await sm.readUntil(s, '\n').catch((e) => e);
  assert.ok(err instanceof sm.IncompleteReadError);
  assert.deepEqual(err.partial, B('no separator here'));
  assert.equal(err.expected, null);
  assert.equal(err.code, 'ERR_STREAMMGR_INCOMPLETE_READ');
  assert.equal((await sm.read(s, 10)).length, 0);
});

test('readUntil past the limit: LimitOverrunError, the bytes left in the stream', async () => {
  const s = new PassThrough();
  s.write('x'.repeat(20));
  s.write('\n');
  const err = await sm.readUntil(s, '\n', { limit: 10 }).catch((e) => e);
  assert.ok(err instanceof sm.LimitOverrunError);
  assert.equal(err.consumed, 20); // found beyond the limit, at 20
  assert.match(err.message, /Separator is found, but chunk is longer than limit/);
  // Nothing consumed: a larger limit reads it all.
  assert.deepEqual(await sm.readUntil(s, '\n', { limit: 100 }), B(`${'x'.repeat(20)}\n`));

  const t2 = new PassThrough();
  t2.write('y'.repeat(30));
  const err2 = await sm.readUntil(t2, '\n', { limit: 10 }).catch((e) => e);
  assert.ok(err2 instanceof sm.LimitOverrunError);
  assert.match(err2.message, /Separator is not found, and chunk exceed the limit/);
  assert.equal(err2.consumed, 30);
  assert.deepEqual(await sm.readExactly(t2, 30), B('y'.repeat(30)));
});

test('readLine: lines, the partial line at EOF, then empty', async () => {
  const s = new PassThrough();
  s.end('one\ntwo\nthree');
  assert.deepEqual(await sm.readLine(s), B('one\n'));
  assert.deepEqual(await sm.readLine(s), B('two\n'));
  assert.deepEqual(await sm.readLine(s), B('three'));
  assert.deepEqual(await sm.readLine(s), B(''));
});

test('readLine over the limit: LineTooLongError, the line dropped as asyncio drops it', async () => {
  const s = new PassThrough();
  s.write(`${'a'.repeat(20)}\nnext\n`);
  const err = await sm.readLine(s, { limit: 10 }).catch((e) => e);
  assert.ok(err instanceof sm.LineTooLongError);
  assert.ok(err instanceof sm.LimitOverrunError);
  assert.equal(err.code, 'ERR_STREAMMGR_LINE_TOO_LONG');
  assert.deepEqual(await sm.readLine(s, { limit: 10 }), B('next\n'), 'the long line and its newline are gone');

  // No newline yet: what was buffered is dropped.
  const t2 = new PassThrough();
  t2.write('b'.repeat(30));
  await assert.rejects(sm.readLine(t2, { limit: 10 }), sm.LineTooLongError);
  t2.end('tail\n');
  assert.deepEqual(await sm.readLine(t2, { limit: 10 }), B('tail\n'));
});

test('readExactly: exactly n across chunks; IncompleteReadError(partial, n) at EOF', async () => {
  const s = new PassThrough();
  const p = sm.readExactly(s, 6);
  s.write('ab');
  s.write('cd');
  s.write('efgh');
  assert.deepEqual(await p, B('abcdef'));
  assert.deepEqual(await sm.readExactly(s, 0), B(''));
  s.end('i');
  const err = await sm.readExactly(s, 10).catch((e) => e);
  assert.ok(err instanceof sm.IncompleteReadError);
  assert.deepEqual(err.partial, B('ghi'));
  assert.equal(err.expected, 10);
  assert.throws(() => sm.readExactly(s, -1), RangeError);
});

test('read(n): up to n as soon as any is there; read() to EOF', async () => {
  const s = new PassThrough();
  s.write('hello world');
  assert.deepEqual(await sm.read(s, 5), B('hello'));
  s.end('!');
  assert.deepEqual(await sm.read(s), B(' world!'));
  assert.deepEqual(await sm.read(s, 5), B(''));
});

test('one reader at a time, as asyncio', async () => {
  const s = new PassThrough();
  const p = sm.readLine(s);
  await assert.rejects(sm.readLine(s), { code: 'ERR_STREAMMGR_CONCURRENT_READ' });
  s.end('x\n');
  assert.deepEqual(await p, B('x\n'));
});

test('a stream error rejects the waiting read', async () => {
  const s = new PassThrough();
  const p = sm.readExactly(s, 5);
  s.destroy(new Error('boom'));
  await assert.rejects(p, /boom/);
});

test('on a daemon socket pair: the helpers and their errors through Attach', async () => {
  const [a, b] = await sm.socketPair({ daemon: daemon.addr });
  const closedA = event(a, 'close');
  const closedB = event(b, 'close');
  b.resume(); // b reads nothing but a's EOF: it closes once both sides ended
  b.write('line one\nline two\n');
  b.write(Buffer.concat([B('HDR'), Buffer.alloc(4, 7)]));
  assert.deepEqual(await a.readLine(), B('line one\n'));
  assert.deepEqual(await a.readUntil('\n'), B('line two\n'));
  assert.deepEqual(await a.readExactly(3), B('HDR'));
  assert.deepEqual(await a.readExactly(4), Buffer.alloc(4, 7));
  // A long line past the limit, then EOF with a partial read.
  b.write(`${'z'.repeat(100 << 10)}\n`);
  await assert.rejects(a.readLine(), sm.LineTooLongError);
  b.end('tail');
  const err = await a.readExactly(10).catch((e) => e);
  assert.ok(err instanceof sm.IncompleteReadError);
  assert.deepEqual(err.partial, B('tail'));
  assert.equal(err.expected, 10);
  // a saw EOF and ended its side (allowHalfOpen false): b gets EOF, both close.
  await withTimeout(Promise.all([closedA, closedB]), 'both ends to close');
});
