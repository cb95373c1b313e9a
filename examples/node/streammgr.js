'use strict';
// streammgr.js: asyncio Streams through streammgrd, for Node.js.
//
// A small wrapper over @grpc/grpc-js with the service loaded at run time by
// @grpc/proto-loader from ../../proto. It looks like Python's asyncio
// Streams API (openConnection gives a StreamReader and a StreamWriter,
// startServer a Server) and gives the daemon's errors back as asyncio's
// exceptions:
//
// - a read that hit EOF first is not a gRPC error: the daemon answers it with
//   incomplete = true and the partial bytes, and this module throws
//   IncompleteReadError {partial, expected};
// - RESOURCE_EXHAUSTED with reason LIMIT_OVERRUN is decoded from the
//   grpc-status-details-bin trailer (a google.rpc.Status whose Any details
//   hold a google.rpc.ErrorInfo and a streammgr.v1.LimitOverrunError) and
//   thrown as LimitOverrunError {consumed};
// - anything else is a StreammgrError. Every error carries grpcCode,
//   grpcStatus (the code's name), reason, metadata (the ErrorInfo's) and
//   details.
//
// Offsets and retries. A StreamReader keeps its inbound offset
// (reader.offset: the bytes its reads received, plus those an over-long
// readline dropped) and a StreamWriter its outbound offset (writer.offset:
// the bytes the daemon accepted); both start at 0 for the fresh streams of
// openConnection, openPair, accept and serve. Every read and write sends its
// offset and takes the next one from the answer, so:
//
// - a read given an AbortSignal ({signal: AbortSignal.timeout(50)}) that
//   aborts rejects with the signal's reason and leaves the offset as it
//   was; if the daemon had already consumed bytes for it, the next read,
//   from the same offset, gets them again: nothing is lost;
// - a stream call (read, write, drain, close, ...) whose attempt fails for
//   want of the daemon is made again with the same offsets, after a short
//   backoff, at most client.retries times: UNAVAILABLE without a streammgr
//   reason (the connection broke or could not be made; the channel re-dials
//   by itself), or DEADLINE_EXCEEDED / CANCELLED when the attempt ran out of
//   the per-attempt timeout new Client(address, {timeoutMs}) set (and a
//   read superseded by a late copy of an earlier attempt, READ_SUPERSEDED).
//   The daemon's own errors (CONNECTION_RESET, SHUTTING_DOWN, IO_TIMEOUT,
//   ...) are never retried, nor is an abort or a cancel: it rejects at
//   once. A retried read gets the bytes of an answer that was lost; a
//   retried write is accepted once.
//
// Writes take no signal: once called, a write is carried out (as asyncio's
// write()), one at a time in call order, so the offsets stay exact.
//
//   const sm = require('./streammgr');
//   const client = new sm.Client('unix:/run/user/1000/streammgrd.sock');
//   const {reader, writer} = await client.openConnection('127.0.0.1', 8888);
//   await writer.write(Buffer.from('Hello World!'));
//   console.log((await reader.read(100)).toString());
//   await writer.close();
//   await writer.waitClosed();
//   client.close();

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
const PROTO_FILE = 'streammgr/v1/streammgr.proto';
const ADDR_ENV = 'STREAMMGR_ADDR';

// The service, from the .proto at run time. bytes are Buffers; int64s become
// Numbers (our int64s are byte counts, far below 2^53).
const packageDefinition = protoLoader.loadSync(PROTO_FILE, {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
});
const { StreamService } = grpc.loadPackageDefinition(packageDefinition).streammgr.v1;

// Error details are decoded with protobufjs (which proto-loader is built on).
// google.rpc's messages are not in this repository, so the few we read are
// declared here, field for field as in google/rpc/status.proto and
// error_details.proto; streammgr.v1.LimitOverrunError comes from our proto.
const detailsRoot = new protobuf.Root();
detailsRoot.resolvePath = (origin, target) => {
  if (path.isAbsolute(target)) return target;
  const full = path.join(PROTO_DIR, target);
  // google/protobuf/*.proto are bundled with protobufjs under their own names.
  return fs.existsSync(full) ? full : target;
};
detailsRoot.loadSync(PROTO_FILE, { keepCase: true });
if (!detailsRoot.lookup('google.protobuf.Any')) {
  protobuf.parse(`
    syntax = "proto3";
    package google.protobuf;
    // As in google/protobuf/any.proto: a packed message and its type.
    message Any {
      string type_url = 1;
      bytes value = 2;
    }
  `, detailsRoot, { keepCase: true });
}
protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  // The status in the grpc-status-details-bin trailer.
  message Status {
    int32 code = 1;
    string message = 2;
    repeated google.protobuf.Any details = 3;
  }
  // Why an error happened: reason is one of manager/errors.go's Reason*.
  message ErrorInfo {
    string reason = 1;
    string domain = 2;
    map<string, string> metadata = 3;
  }
  // Invalid request fields (INVALID_ARGUMENT).
  message BadRequest {
    message FieldViolation {
      string field = 1;
      string description = 2;
    }
    repeated FieldViolation field_violations = 1;
  }
`, detailsRoot, { keepCase: true });
detailsRoot.resolveAll();
const Status = detailsRoot.lookupType('google.rpc.Status');
const DETAIL_TYPES = new Map(
  ['google.rpc.ErrorInfo', 'google.rpc.BadRequest', 'streammgr.v1.LimitOverrunError'].map((name) => [
    `type.googleapis.com/${name}`,
    detailsRoot.lookupType(name),
  ]),
);

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, n]) => [n, name]));

/**
 * Decodes the grpc-status-details-bin trailer of a failed call.
 * @param {grpc.Metadata|undefined} metadata the error's metadata
 * @returns {{code: number, message: string, details: object[]}|null} the
 *   google.rpc.Status, each detail decoded to a plain object with its
 *   '@type' (unknown types keep their raw bytes as value), or null.
 */
function decodeStatusDetails(metadata) {
  const raw = metadata && metadata.get('grpc-status-details-bin')[0];
  if (!raw) return null;
  const st = Status.decode(Buffer.isBuffer(raw) ? raw : Buffer.from(raw, 'base64'));
  const details = st.details.map((any) => {
    const type = DETAIL_TYPES.get(any.type_url);
    if (!type) return { '@type': any.type_url, value: Buffer.from(any.value) };
    const obj = type.toObject(type.decode(any.value), { longs: Number, defaults: true });
    return { '@type': any.type_url, ...obj };
  });
  return { code: st.code, message: st.message, details };
}

/** asyncio.IncompleteReadError: EOF came before the read could complete. */
class IncompleteReadError extends Error {
  constructor(partial, expected) {
    super(`${partial.length} bytes read on a total of ${expected == null ? 'undefined' : expected} expected bytes`);
    this.name = 'IncompleteReadError';
    this.partial = partial;
    this.expected = expected; // null for readuntil, as asyncio's None
  }
}

/** A failed call: the gRPC status with the daemon's reason. */
class StreammgrError extends Error {
  constructor(message, grpcCode, reason, details) {
    super(message);
    this.name = 'StreammgrError';
    this.grpcCode = grpcCode;
    this.grpcStatus = CODE_NAMES[grpcCode] || String(grpcCode);
    this.reason = reason;
    this.details = details;
  }

  toString() {
    return `${this.name}: ${this.grpcStatus}${this.reason ? ' ' + this.reason : ''}: ${this.message}`;
  }
}

/** asyncio.LimitOverrunError: a readuntil found no separator within the limit. */
class LimitOverrunError extends StreammgrError {
  constructor(message, grpcCode, reason, details, consumed) {
    super(message, grpcCode, reason, details);
    this.name = 'LimitOverrunError';
    this.consumed = consumed;
  }
}

/**
 * Turns a grpc-js ServiceError into StreammgrError or LimitOverrunError.
 * @param {Error & {code: number, details: string, metadata: grpc.Metadata}} err
 */
function translateError(err) {
  let status = null;
  try {
    status = decodeStatusDetails(err.metadata);
  } catch (e) {
    // A malformed trailer: report the plain status.
  }
  const details = status ? status.details : [];
  const info = details.find((d) => d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo');
  const overrun = details.find((d) => d['@type'] === 'type.googleapis.com/streammgr.v1.LimitOverrunError');
  const reason = info ? info.reason : '';
  const message = err.details || err.message;
  const metadata = (info && info.metadata) || {};
  let out;
  if (reason === 'LIMIT_OVERRUN' && overrun) {
    out = new LimitOverrunError(message, err.code, reason, details, overrun.consumed);
  } else {
    out = new StreammgrError(message, err.code, reason, details);
  }
  out.metadata = metadata;
  if (metadata.errno) out.errno = Number(metadata.errno);
  if (overrun) out.nextOffset = overrun.next_offset; // LIMIT_OVERRUN, LINE_TOO_LONG
  out.cause = err;
  return out;
}

/**
 * Whether a failed attempt of a call that is safe to repeat is worth
 * repeating: the transport failed (UNAVAILABLE with no streammgr reason;
 * the daemon's own UNAVAILABLE errors, such as CONNECTION_RESET or
 * SHUTTING_DOWN, carry one), or the attempt ran out of the timeout the
 * client set on it (timed; the daemon may have seen the deadline too), or
 * a read was superseded (READ_SUPERSEDED: a late copy of an earlier
 * attempt, sent on a connection that broke, took its place; it consumed
 * nothing).
 */
function isRetryable(err, timed) {
  if (!(err instanceof StreammgrError)) return false;
  if (err.grpcCode === grpc.status.UNAVAILABLE) return err.reason === '';
  if (err.grpcCode === grpc.status.ABORTED) return err.reason === 'READ_SUPERSEDED';
  if (err.grpcCode === grpc.status.DEADLINE_EXCEEDED || err.grpcCode === grpc.status.CANCELLED) {
    return timed && (err.reason === '' || err.reason === err.grpcStatus);
  }
  return false;
}

/** Resolves after ms; rejects with the signal's reason if it aborts first. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * 'unix:/path', 'unix:///path' or 'host:port' to a grpc-js target. Abstract
 * socket names (unix:@name) are rejected: grpc-js has no resolver for them.
 */
function daemonTarget(address) {
  if (address.startsWith('unix:')) {
    let p = address.slice('unix:'.length);
    if (p.startsWith('//')) p = p.slice(2);
    if (p.startsWith('@')) {
      throw new Error(`${address}: abstract Unix socket addresses are not supported by grpc-js; give the daemon a socket path (unix:/path) or host:port`);
    }
    return `unix://${path.resolve(p)}`; // unix:///abs/path
  }
  return address;
}

// The open clients, for run() to cancel their calls when an example does
// not stop on SIGINT/SIGTERM.
const openClients = new Set();

/** A connection to streammgrd. */
class Client {
  /**
   * @param {string} address 'unix:/path' or 'host:port'
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs] the deadline of each attempt of a stream
   *   call (default none: a read waits as long as asyncio's would)
   * @param {number} [opts.retries] how many times a stream call is made
   *   again after a transport failure or an attempt timeout (default 5)
   * @param {number} [opts.backoffMs] the wait before the first retry,
   *   doubled before each next one, at most 1 s (default 50)
   */
  constructor(address, { timeoutMs, retries = 5, backoffMs = 50 } = {}) {
    this.address = address;
    this.timeoutMs = timeoutMs;
    this.retries = retries;
    this.backoffMs = backoffMs;
    // The channel re-dials a lost connection by itself; a short reconnect
    // backoff lets a retry find the daemon soon after it is back.
    this.stub = new StreamService(daemonTarget(address), grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    this.calls = new Set();
    this.stopped = false; // closed, or its calls cancelled: no more retries
    openClients.add(this);
  }

  /**
   * Runs one unary RPC; rejects with translateError's error, or with the
   * signal's reason when it aborts (the call is then cancelled).
   *
   * retry says the call is safe to repeat (a stream call, its read or write
   * carrying an offset): an attempt that fails with UNAVAILABLE and no
   * streammgr reason, or runs out of its timeout (timeoutMs, else the
   * client's), is then made again, at most this.retries times.
   */
  async call(method, request, { timeoutMs, retry = false, signal } = {}) {
    if (retry && timeoutMs == null) timeoutMs = this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (attempt) await sleep(Math.min(this.backoffMs * 2 ** (attempt - 1), 1000), signal);
      try {
        return await this.attempt(method, request, timeoutMs, signal);
      } catch (err) {
        if (!retry || this.stopped || attempt >= this.retries || !isRetryable(err, timeoutMs != null)) throw err;
      }
    }
  }

  /** One attempt of call(). */
  attempt(method, request, timeoutMs, signal) {
    if (signal && signal.aborted) return Promise.reject(signal.reason);
    const options = timeoutMs == null ? {} : { deadline: new Date(Date.now() + timeoutMs) };
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        call.cancel();
        reject(signal.reason);
      };
      const call = this.stub[method](request, options, (err, resp) => {
        this.calls.delete(call);
        if (signal) signal.removeEventListener('abort', onAbort);
        if (err) reject(translateError(err));
        else resolve(resp);
      });
      this.calls.add(call);
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Cancels the calls in progress: they reject with CANCELLED, unretried. */
  cancelCalls() {
    this.stopped = true;
    for (const call of this.calls) call.cancel();
  }

  pair(streamId) {
    return { reader: new StreamReader(this, streamId), writer: new StreamWriter(this, streamId) };
  }

  /**
   * asyncio.open_connection(host, port, ssl=..., server_hostname=...).
   * @param {object} [opts]
   * @param {boolean} [opts.ssl] TLS, verified against caPem or the system roots
   * @param {string} [opts.serverHostname] name to verify and send as SNI (default host)
   * @param {string} [opts.caPem] PEM roots to trust
   * @param {number} [opts.limit] the reader's limit
   */
  async openConnection(host, port, { ssl = false, serverHostname, caPem, limit } = {}) {
    const req = { tcp: { host, port } };
    if (ssl) req.tls = { server_hostname: serverHostname || '', ca_pem: caPem || '' };
    if (limit != null) req.limit = limit;
    const resp = await this.call('Open', req);
    return this.pair(resp.stream_id);
  }

  /** asyncio.open_unix_connection(path). */
  async openUnixConnection(socketPath, { limit } = {}) {
    const req = { unix: { path: socketPath } };
    if (limit != null) req.limit = limit;
    return this.pair((await this.call('Open', req)).stream_id);
  }

  /** A connected pair made by the daemon: [{reader, writer}, {reader, writer}]. */
  async openPair({ limit } = {}) {
    const req = limit == null ? {} : { limit };
    const resp = await this.call('OpenPair', req);
    return [this.pair(resp.first_stream_id), this.pair(resp.second_stream_id)];
  }

  /** asyncio.start_server without the callback: see Server. */
  async startServer(host, port, { limit, backlog = 0 } = {}) {
    const req = { tcp: { host: host || '', port }, backlog };
    if (limit != null) req.limit = limit;
    const resp = await this.call('StartServer', req);
    return new Server(this, resp.server_id, resp.sockets);
  }

  /** Closes the channel. */
  close() {
    this.stopped = true;
    openClients.delete(this);
    // Not this.stub.close(): the generated client has a method per RPC under
    // its lowerCamelCase name too, so stub.close is the Close RPC.
    grpc.Client.prototype.close.call(this.stub);
  }
}

/**
 * asyncio.StreamReader over a daemon stream handle. offset is the inbound
 * offset: 0 for a fresh stream; null takes over a stream read from before
 * (the first read then sends none, and is not retried, and learns it).
 * Every read takes {signal}: an AbortSignal that abandons it, leaving the
 * offset as it was.
 */
class StreamReader {
  constructor(client, streamId, offset = 0) {
    this.client = client;
    this.streamId = streamId;
    this.offset = offset;
    this.reading = ''; // the read waiting, as asyncio allows only one
  }

  /**
   * Runs one read RPC at this.offset and moves the offset to the answer's
   * next_offset (or the LimitOverrunError detail's); a read that fails
   * otherwise, or is aborted, leaves it where it was.
   */
  async _read(method, req, name, signal) {
    if (this.reading) throw new Error(`${name}() called while another coroutine is already waiting for incoming data`);
    this.reading = name;
    try {
      if (this.offset != null) req.offset = this.offset;
      let resp;
      try {
        resp = await this.client.call(method, req, { retry: this.offset != null, signal });
      } catch (err) {
        if (err && err.nextOffset != null) this.offset = err.nextOffset; // LIMIT_OVERRUN, LINE_TOO_LONG
        throw err;
      }
      this.offset = resp.next_offset;
      return resp;
    } finally {
      this.reading = '';
    }
  }

  /** Up to n bytes (n = -1: until EOF); an empty Buffer at EOF. */
  async read(n = -1, { signal } = {}) {
    return (await this._read('Read', { stream_id: this.streamId, n }, 'read', signal)).data;
  }

  /**
   * One line with its '\n', the partial line at EOF, empty after EOF. A line
   * over the limit is LINE_TOO_LONG: it is dropped and the offset moves past it.
   */
  async readline({ signal } = {}) {
    return (await this._read('ReadLine', { stream_id: this.streamId }, 'readline', signal)).data;
  }

  /** Exactly n bytes; IncompleteReadError(partial, n) at EOF. */
  async readexactly(n, { signal } = {}) {
    const resp = await this._read('ReadExactly', { stream_id: this.streamId, n }, 'readexactly', signal);
    if (resp.incomplete) throw new IncompleteReadError(resp.data, resp.expected);
    return resp.data;
  }

  /**
   * Bytes up to and including separator (a Buffer or string, or an array of
   * them: the match that ends first wins). IncompleteReadError(partial, null)
   * at EOF, LimitOverrunError past the limit (the data stays buffered).
   */
  async readuntil(separator = '\n', { signal } = {}) {
    const req = { stream_id: this.streamId };
    if (Array.isArray(separator)) req.separators = separator.map((s) => Buffer.from(s));
    else req.separator = Buffer.from(separator);
    const resp = await this._read('ReadUntil', req, 'readuntil', signal);
    if (resp.incomplete) throw new IncompleteReadError(resp.data, null);
    return resp.data;
  }

  async atEof() {
    return (await this.client.call('AtEof', { stream_id: this.streamId }, { retry: true })).at_eof;
  }

  /** Lines until EOF: for await (const line of reader). */
  async *[Symbol.asyncIterator]() {
    for (;;) {
      const line = await this.readline();
      if (line.length === 0) return;
      yield line;
    }
  }
}

/**
 * google.protobuf.Value, as proto-loader decodes it, to plain JS. The
 * well-known types come from protobufjs's bundled descriptors, whose field
 * names are lowerCamelCase whatever keepCase says, so both spellings are
 * accepted.
 */
function fromValue(v) {
  const kind = v && v.kind && v.kind.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  if (!kind || kind === 'nullValue') return null;
  const x = v[kind] !== undefined ? v[kind] : v[v.kind];
  if (kind === 'listValue') return (x.values || []).map(fromValue);
  if (kind === 'structValue') {
    return Object.fromEntries(Object.entries(x.fields || {}).map(([k, f]) => [k, fromValue(f)]));
  }
  return x;
}

/**
 * asyncio.StreamWriter over a daemon stream handle. offset is the outbound
 * offset: 0 for a fresh stream; null takes over a stream written before
 * (the first write sends none, and is not retried).
 */
class StreamWriter {
  constructor(client, streamId, offset = 0) {
    this.client = client;
    this.streamId = streamId;
    this.offset = offset;
    this.writes = Promise.resolve(); // the last write called: one at a time, in order
  }

  /** Runs one write RPC at this.offset, after the writes called before it. */
  _write(method, req) {
    const done = this.writes.then(async () => {
      if (this.offset != null) req.offset = this.offset;
      const resp = await this.client.call(method, req, { retry: this.offset != null });
      this.offset = resp.next_offset;
      return resp.buffered;
    });
    this.writes = done.catch(() => {}); // a failed write accepted nothing
    return done;
  }

  /** A call that must come after the writes called before it. */
  async _afterWrites(method, req) {
    await this.writes;
    return this.client.call(method, req, { retry: true });
  }

  /** Buffers data (never waits for the peer); resolves to the bytes buffered. */
  write(data) {
    return this._write('Write', { stream_id: this.streamId, data: Buffer.from(data) });
  }

  writelines(lines) {
    return this._write('WriteLines', { stream_id: this.streamId, lines: lines.map((l) => Buffer.from(l)) });
  }

  async drain() {
    await this._afterWrites('Drain', { stream_id: this.streamId });
  }

  async writeEof() {
    await this._afterWrites('WriteEof', { stream_id: this.streamId });
  }

  async canWriteEof() {
    return (await this.client.call('CanWriteEof', { stream_id: this.streamId }, { retry: true })).can_write_eof;
  }

  async close() {
    await this._afterWrites('Close', { stream_id: this.streamId });
  }

  async abort() {
    await this.client.call('Abort', { stream_id: this.streamId }, { retry: true });
  }

  async waitClosed() {
    await this.client.call('WaitClosed', { stream_id: this.streamId }, { retry: true });
  }

  async isClosing() {
    return (await this.client.call('IsClosing', { stream_id: this.streamId }, { retry: true })).is_closing;
  }

  /** peername, sockname, cipher, ...: peername is [host, port] for TCP. */
  async getExtraInfo(name, dflt = null) {
    const resp = await this.client.call('GetExtraInfo', { stream_id: this.streamId, name }, { retry: true });
    const v = fromValue(resp.value);
    return v == null ? dflt : v;
  }
}

/** asyncio.Server for a daemon server handle. */
class Server {
  constructor(client, serverId, sockets) {
    this.client = client;
    this.serverId = serverId;
    this.sockets = sockets; // ['127.0.0.1:8888']
    this.calls = new Set();
  }

  /** The next accepted connection; rejects with ACCEPT_TIMEOUT after timeoutMs. */
  async accept(timeoutMs) {
    const req = { server_id: this.serverId };
    if (timeoutMs != null) {
      req.timeout = { seconds: Math.floor(timeoutMs / 1000), nanos: (timeoutMs % 1000) * 1e6 };
    }
    return this.client.pair((await this.client.call('Accept', req)).stream_id);
  }

  /**
   * Every connection as it arrives (the Serve server-streaming RPC), until
   * the server is closed: for await (const {reader, writer, peername} of server.serve()).
   */
  async *serve() {
    const call = this.client.stub.Serve({ server_id: this.serverId });
    this.calls.add(call);
    try {
      for await (const resp of call) {
        yield { ...this.client.pair(resp.stream_id), peername: resp.peername };
      }
    } catch (err) {
      if (err.code === grpc.status.CANCELLED && this.closing) return; // close() ended it
      throw translateError(err);
    } finally {
      this.calls.delete(call);
      call.cancel();
    }
  }

  /**
   * Runs handler({reader, writer, peername}) for each connection, like
   * asyncio.start_server's callback, until the server closes, then waits
   * for the handlers still running. A failing handler has its writer
   * aborted (its stream is not left open in the daemon) and is reported on
   * stderr; it does not stop the server.
   */
  async serveForever(handler) {
    const running = new Set();
    try {
      for await (const conn of this.serve()) {
        const p = Promise.resolve()
          .then(() => handler(conn))
          .catch(async (err) => {
            await conn.writer.abort().catch(() => {}); // already closed or released
            console.error(`connection handler failed: ${err}`);
          })
          .finally(() => running.delete(p));
        running.add(p);
      }
    } finally {
      await Promise.allSettled(running);
    }
  }

  /** Stops listening and releases the handle (asyncio's Server.close()). */
  /** The daemon then ends serve() (and serveForever) normally. */
  async close({ closeClients = false, abortClients = false } = {}) {
    this.closing = true;
    try {
      await this.client.call('CloseServer', {
        server_id: this.serverId,
        close_clients: closeClients,
        abort_clients: abortClients,
      });
    } finally {
      for (const call of this.calls) call.cancel();
    }
  }
}

/**
 * Splits an example's arguments: the daemon address is the first argument
 * if it starts with unix: (unix:/path, unix:///path) or is neither an
 * option nor a URL (host:port), else $STREAMMGR_ADDR. Options are
 * --name value pairs. Returns {address, positional, options}.
 */
function parseArgs(argv, usage) {
  const args = [...argv];
  let address = process.env[ADDR_ENV] || '';
  const isAddress = (a) => a.startsWith('unix:') || (!a.startsWith('-') && !a.includes('://'));
  if (args.length && isAddress(args[0])) address = args.shift();
  const positional = [];
  const options = {};
  while (args.length) {
    const a = args.shift();
    if (a === '-h' || a === '--help') {
      console.log(usage);
      process.exit(0);
    } else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) options[a.slice(2, eq)] = a.slice(eq + 1);
      else if (args.length) options[a.slice(2)] = args.shift();
      else usageError(usage, `${a} needs a value`);
    } else {
      positional.push(a);
    }
  }
  if (!address) usageError(usage, `no daemon address: pass unix:/path or host:port first, or set ${ADDR_ENV}`);
  return { address, positional, options };
}

function usageError(usage, msg) {
  console.error(`error: ${msg}\n${usage}`);
  process.exit(2);
}

// After SIGINT/SIGTERM, how long main has to finish on its own before its
// calls are cancelled, and then to run its finally blocks.
const STOP_GRACE_MS = 1000;
const CLEANUP_MS = 3000;
const EXIT_INTERRUPTED = 130; // 128 + SIGINT, as a shell reports Ctrl-C

/**
 * Runs an example's async main(signal): any error is printed and exits 1.
 * SIGINT and SIGTERM abort the given AbortSignal (check signal.aborted
 * before waiting on it, a signal may have come already): a main that then
 * returns, as a server stopping, exits 0. A main that ignores the signal has
 * its calls in progress cancelled after a moment, so its finally blocks run
 * (aborting what it opened), and exits 130; so does a second signal.
 */
function run(main) {
  const ac = new AbortController();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(EXIT_INTERRUPTED); // a second Ctrl-C: now
    interrupted = true;
    ac.abort();
    setTimeout(() => {
      for (const c of openClients) c.cancelCalls();
      setTimeout(() => process.exit(EXIT_INTERRUPTED), CLEANUP_MS);
    }, STOP_GRACE_MS);
  };
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, onSignal);
  main(ac.signal).then(
    () => process.exit(0),
    (err) => {
      if (interrupted) {
        console.error('interrupted');
        process.exit(EXIT_INTERRUPTED);
      }
      console.error(`error: ${err && err.toString ? err.toString() : err}`);
      process.exit(1);
    },
  );
}

/**
 * Runs fn(); if it fails (or is interrupted: run() cancels the calls of an
 * example that ignores SIGINT/SIGTERM), aborts the writers, so their
 * streams are not left open in the daemon, and rethrows.
 */
async function aborting(writers, fn) {
  try {
    return await fn();
  } catch (err) {
    await Promise.all(writers.map((w) => w.abort().catch(() => {}))); // already closed or released
    throw err;
  }
}

/** Python's repr() of a string, for output like the Python examples'. */
function pyRepr(s) {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  const body = s.replace(/[\\\n\r\t]/g, (c) => ({ '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c]);
  return q + (q === "'" ? body.replace(/'/g, "\\'") : body) + q;
}

module.exports = {
  Client,
  StreamReader,
  StreamWriter,
  Server,
  IncompleteReadError,
  LimitOverrunError,
  StreammgrError,
  decodeStatusDetails,
  translateError,
  isRetryable,
  daemonTarget,
  parseArgs,
  run,
  aborting,
  pyRepr,
  PROTO_DIR,
};
