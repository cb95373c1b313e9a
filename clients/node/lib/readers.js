'use strict';
// asyncio's StreamReader methods as promise helpers over any Readable
// byte stream (a streammgr Socket, but also a net.Socket or a file
// stream): readLine, readExactly, readUntil and read, with asyncio's
// buffer limit and errors. They read in paused mode (stream.read(), the
// 'readable' event) and put back (stream.unshift()) what they do not
// return, so they mix with each other and with plain stream.read();
// don't use them on a stream that has 'data' listeners or is piped.
const { IncompleteReadError, LimitOverrunError, LineTooLongError } = require('./errors');

const DEFAULT_LIMIT = 64 * 1024; // asyncio's _DEFAULT_LIMIT
const kReading = Symbol('streammgr.reading');

function limitOf(stream, options) {
  const limit = options && options.limit != null ? options.limit : stream.limit != null ? stream.limit : DEFAULT_LIMIT;
  if (!(limit > 0)) throw new RangeError('limit must be positive');
  return limit;
}

function prematureClose() {
  const err = new Error('Premature close');
  err.code = 'ERR_STREAM_PREMATURE_CLOSE';
  return err;
}

/** The next chunk of the stream, or null at EOF; rejects with the stream's error. */
function nextChunk(stream) {
  return new Promise((resolve, reject) => {
    const tryRead = () => {
      const chunk = stream.read();
      if (chunk !== null) {
        done(resolve, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        return true;
      }
      if (stream.readableEnded) {
        done(resolve, null);
        return true;
      }
      if (stream.destroyed) {
        done(reject, stream.errored || prematureClose());
        return true;
      }
      return false;
    };
    const onReadable = () => tryRead();
    const onEnd = () => done(resolve, null);
    const onError = (err) => done(reject, err);
    const onClose = () => {
      if (stream.readableEnded) done(resolve, null);
      else if (!tryRead()) done(reject, stream.errored || prematureClose());
    };
    let settled = false;
    function done(fn, v) {
      if (settled) return;
      settled = true;
      stream.removeListener('readable', onReadable);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      stream.removeListener('close', onClose);
      fn(v);
    }
    if (stream.errored) {
      reject(stream.errored);
      return;
    }
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
    tryRead();
  });
}

/** Runs fn as the stream's one reader (asyncio allows one waiter at a time). */
async function exclusive(stream, name, fn) {
  if (stream[kReading]) {
    const err = new Error(`${name}() called while another coroutine is already waiting for incoming data`);
    err.code = 'ERR_STREAMMGR_CONCURRENT_READ';
    throw err;
  }
  stream[kReading] = name;
  try {
    return await fn();
  } finally {
    stream[kReading] = null;
  }
}

function putBack(stream, buf) {
  if (buf.length > 0 && !stream.readableEnded && !stream.destroyed) stream.unshift(buf);
}

function toSeparators(separator) {
  const list = Array.isArray(separator) ? separator : [separator];
  if (list.length === 0) throw new RangeError('readUntil: no separator');
  const seps = list.map((s) => (Buffer.isBuffer(s) ? s : Buffer.from(s)));
  for (const s of seps) if (s.length === 0) throw new RangeError('Separator should be at least one-byte string');
  return seps.sort((a, b) => a.length - b.length);
}

/**
 * The core of readUntil: resolves {buf, end, start} with the bytes read so
 * far (buf) and the first match ending first; or rejects. On EOF and on a
 * limit overrun the bytes are handled by the caller's onFail (asyncio:
 * IncompleteReadError consumes them, LimitOverrunError leaves them).
 */
async function scanUntil(stream, seps, limit) {
  const minLen = seps[0].length;
  const maxLen = seps[seps.length - 1].length;
  let buf = Buffer.alloc(0);
  let offset = 0;
  for (;;) {
    if (buf.length - offset >= minLen) {
      let start = -1;
      let end = -1;
      for (const sep of seps) {
        const i = buf.indexOf(sep, offset);
        if (i !== -1 && (end === -1 || i + sep.length < end)) {
          start = i;
          end = i + sep.length;
        }
      }
      if (end !== -1) {
        if (start > limit) {
          putBack(stream, buf);
          throw new LimitOverrunError('Separator is found, but chunk is longer than limit', start);
        }
        putBack(stream, buf.subarray(end));
        return buf.subarray(0, end);
      }
      offset = Math.max(0, buf.length + 1 - maxLen);
      if (offset > limit) {
        putBack(stream, buf);
        throw new LimitOverrunError('Separator is not found, and chunk exceed the limit', offset);
      }
    }
    let chunk;
    try {
      chunk = await nextChunk(stream);
    } catch (err) {
      putBack(stream, buf);
      throw err;
    }
    if (chunk === null) throw new IncompleteReadError(buf, null);
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
  }
}

/**
 * StreamReader.readuntil(separator): the bytes up to and including the
 * separator (a Buffer or string, or an array of them: the match that ends
 * first wins). EOF first: IncompleteReadError {partial, expected: null}
 * (the bytes are consumed). More than `limit` bytes before a separator:
 * LimitOverrunError {consumed}, the bytes left in the stream.
 */
function readUntil(stream, separator = '\n', options) {
  const seps = toSeparators(separator);
  const limit = limitOf(stream, options);
  return exclusive(stream, 'readuntil', () => scanUntil(stream, seps, limit));
}

/**
 * StreamReader.readline(): one line with its '\n'; the partial line at
 * EOF; an empty Buffer at EOF. A line over the limit rejects with
 * LineTooLongError (asyncio's ValueError) and is dropped as asyncio drops
 * it: up to and including its '\n' when that was seen, else what was
 * buffered.
 */
function readLine(stream, options) {
  const limit = limitOf(stream, options);
  const sep = Buffer.from('\n');
  return exclusive(stream, 'readline', async () => {
    try {
      return await scanUntil(stream, [sep], limit);
    } catch (err) {
      if (err instanceof IncompleteReadError) return err.partial;
      if (err instanceof LimitOverrunError) {
        // scanUntil put the bytes back: take them again and drop the line.
        const buf = stream.read() || Buffer.alloc(0);
        if (buf.length >= err.consumed + 1 && buf[err.consumed] === 0x0a) {
          putBack(stream, buf.subarray(err.consumed + 1));
        }
        throw new LineTooLongError(err.message, err.consumed);
      }
      throw err;
    }
  });
}

/**
 * StreamReader.readexactly(n): exactly n bytes. EOF first:
 * IncompleteReadError {partial, expected: n} (the bytes are consumed).
 */
function readExactly(stream, n) {
  if (!Number.isInteger(n) || n < 0) throw new RangeError('readexactly size can not be less than zero');
  return exclusive(stream, 'readexactly', async () => {
    if (n === 0) return Buffer.alloc(0);
    const parts = [];
    let got = 0;
    while (got < n) {
      let chunk;
      try {
        chunk = await nextChunk(stream);
      } catch (err) {
        putBack(stream, Buffer.concat(parts, got));
        throw err;
      }
      if (chunk === null) throw new IncompleteReadError(Buffer.concat(parts, got), n);
      if (got + chunk.length > n) {
        const need = n - got;
        putBack(stream, chunk.subarray(need));
        chunk = chunk.subarray(0, need);
      }
      parts.push(chunk);
      got += chunk.length;
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  });
}

/**
 * StreamReader.read(n = -1): up to n bytes as soon as any are there; n < 0
 * reads to EOF; an empty Buffer at EOF.
 */
function read(stream, n = -1) {
  return exclusive(stream, 'read', async () => {
    if (n === 0) return Buffer.alloc(0);
    if (n < 0) {
      const parts = [];
      for (;;) {
        const chunk = await nextChunk(stream);
        if (chunk === null) return Buffer.concat(parts);
        parts.push(chunk);
      }
    }
    const chunk = await nextChunk(stream);
    if (chunk === null) return Buffer.alloc(0);
    if (chunk.length > n) {
      putBack(stream, chunk.subarray(n));
      return chunk.subarray(0, n);
    }
    return chunk;
  });
}

module.exports = { readLine, readExactly, readUntil, read, DEFAULT_LIMIT };
