'use strict';
// Errors as Node's own: a daemon error on a socket becomes an Error with
// code ('ECONNREFUSED', 'ECONNRESET', ...), errno (negative, as libuv's),
// syscall, address and port, from the google.rpc.ErrorInfo the daemon puts
// on every error (its reason, and the errno in its metadata). Every such
// error also carries the daemon's view: grpcCode, grpcStatus, reason,
// metadata, details (the decoded google.rpc.Status details) and
// daemonMessage.
const os = require('node:os');
const grpc = require('@grpc/grpc-js');
const { statusFromMetadata } = require('./status');

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, n]) => [n, name]));
const ERRNO = os.constants.errno; // name -> positive number
const ERRNO_NAMES = Object.fromEntries(Object.entries(ERRNO).map(([name, n]) => [n, name]));

// The daemon's reasons that name a socket condition, as Node's codes.
const REASON_CODES = {
  CONNECTION_REFUSED: 'ECONNREFUSED',
  CONNECTION_RESET: 'ECONNRESET',
  CONNECTION_ABORTED: 'ECONNABORTED',
  CONNECTION_LOST: 'ECONNRESET',
  BROKEN_PIPE: 'EPIPE',
  UNREACHABLE: 'EHOSTUNREACH',
  NO_SUCH_SOCKET: 'ENOENT',
  DNS_ERROR: 'ENOTFOUND',
  CONNECT_TIMEOUT: 'ETIMEDOUT',
  IO_TIMEOUT: 'ETIMEDOUT',
  ADDRESS_IN_USE: 'EADDRINUSE',
  PERMISSION_DENIED: 'EACCES',
  DESTINATION_DENIED: 'EACCES',
  BIND_DENIED: 'EACCES',
  TOO_MANY_OPEN_FILES: 'EMFILE',
  IO_ERROR: 'EIO',
};

/** The daemon's view of a failed gRPC call: {grpcCode, reason, metadata, details, message}. */
function daemonStatus(err) {
  const st = statusFromMetadata(err && err.metadata);
  const details = st ? st.details : [];
  const info = details.find((d) => d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo');
  return {
    grpcCode: err && typeof err.code === 'number' ? err.code : grpc.status.UNKNOWN,
    reason: info ? info.reason : '',
    metadata: (info && info.metadata) || {},
    details,
    message: (err && (err.details || err.message)) || '',
  };
}

/** Attaches the daemon's view of the failure to err. */
function decorate(err, ds, cause) {
  err.grpcCode = ds.grpcCode;
  err.grpcStatus = CODE_NAMES[ds.grpcCode] || String(ds.grpcCode);
  err.reason = ds.reason;
  err.metadata = ds.metadata;
  err.details = ds.details;
  err.daemonMessage = ds.message;
  if (cause) err.cause = cause;
  return err;
}

/**
 * A grpc-js error as a Node-style error. syscall is the Node operation it
 * stands for ('connect', 'read', 'write', 'listen'); address and port name
 * the destination, when there is one.
 */
function toNodeError(grpcErr, { syscall = 'read', address, port, daemon } = {}) {
  if (grpcErr && grpcErr.code !== undefined && typeof grpcErr.code === 'string') return grpcErr; // already ours
  const ds = daemonStatus(grpcErr);
  let code = REASON_CODES[ds.reason];
  const errno = Number(ds.metadata.errno);
  if (errno > 0 && ERRNO_NAMES[errno]) code = ERRNO_NAMES[errno];
  let err;
  if (code) {
    const where = address ? (port != null ? ` ${address}:${port}` : ` ${address}`) : '';
    const sc = code === 'ENOTFOUND' ? 'getaddrinfo' : code === 'EPIPE' && syscall === 'read' ? 'write' : syscall;
    err = new Error(`${sc} ${code}${where}`);
    err.code = code;
    if (ERRNO[code]) err.errno = -ERRNO[code];
    else if (code === 'ENOTFOUND') err.errno = -3008; // libuv's UV_EAI_NONAME, as Node reports it
    err.syscall = sc;
    if (code === 'ENOTFOUND') err.hostname = address;
    else if (address != null) err.address = address;
    if (port != null && code !== 'ENOTFOUND') err.port = port;
  } else if (ds.reason) {
    err = new Error(`streammgrd: ${ds.reason}: ${ds.message}`);
    err.code = `ERR_STREAMMGR_${ds.reason}`;
  } else if (ds.grpcCode === grpc.status.UNAVAILABLE) {
    // No reason: the daemon was not reached, or the gRPC connection broke.
    err = new Error(`streammgrd${daemon ? ' at ' + daemon : ''} unavailable: ${ds.message}`);
    err.code = 'ERR_STREAMMGR_UNAVAILABLE';
  } else {
    const name = CODE_NAMES[ds.grpcCode] || 'UNKNOWN';
    err = new Error(`streammgrd: ${name}: ${ds.message}`);
    err.code = `ERR_STREAMMGR_${name}`;
  }
  return decorate(err, ds, grpcErr);
}

/**
 * asyncio.IncompleteReadError: EOF came before the read could complete.
 * partial holds the bytes read; expected is the count asked for (null for
 * readUntil, as asyncio's None).
 */
class IncompleteReadError extends Error {
  constructor(partial, expected) {
    super(`${partial.length} bytes read on a total of ${expected == null ? 'undefined' : expected} expected bytes`);
    this.name = 'IncompleteReadError';
    this.code = 'ERR_STREAMMGR_INCOMPLETE_READ';
    this.partial = partial;
    this.expected = expected == null ? null : expected;
  }
}

/**
 * asyncio.LimitOverrunError: readUntil found no separator within the limit
 * (the bytes stay buffered; consumed says how many to consume before a
 * retry could succeed).
 */
class LimitOverrunError extends Error {
  constructor(message, consumed) {
    super(message);
    this.name = 'LimitOverrunError';
    this.code = 'ERR_STREAMMGR_LIMIT_OVERRUN';
    this.consumed = consumed;
  }
}

/**
 * readLine's line over the limit (asyncio raises ValueError): the line, or
 * what was buffered of it, was dropped, as asyncio drops it.
 */
class LineTooLongError extends LimitOverrunError {
  constructor(message, consumed) {
    super(message, consumed);
    this.name = 'LineTooLongError';
    this.code = 'ERR_STREAMMGR_LINE_TOO_LONG';
  }
}

module.exports = {
  toNodeError,
  daemonStatus,
  IncompleteReadError,
  LimitOverrunError,
  LineTooLongError,
  CODE_NAMES,
};
