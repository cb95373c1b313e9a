'use strict';
// Server: a net.Server-like listener owned by the daemon (StartServer),
// whose connections are claimed as they arrive with the Serve RPC and
// handed out as Sockets (each attached with Attach) in 'connection'.
const { EventEmitter } = require('node:events');
const net = require('node:net');
const { clientFor } = require('./client');
const { toNodeError } = require('./errors');
const { Socket, parseAddr } = require('./socket');

const CLEANUP_TIMEOUT_MS = 10000;

/**
 * google.protobuf.Value as proto-loader decodes it, to plain JS. (The
 * well-known types come from protobufjs's bundled descriptors, whose field
 * names are lowerCamelCase whatever keepCase says: both are accepted.)
 */
function fromValue(v) {
  if (!v || !v.kind) return null;
  const kind = v.kind.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  const x = v[v.kind] !== undefined ? v[v.kind] : v[kind];
  if (kind === 'nullValue' || x === undefined) return null;
  if (kind === 'listValue') return (x.values || []).map(fromValue);
  if (kind === 'structValue') return Object.fromEntries(Object.entries(x.fields || {}).map(([k, f]) => [k, fromValue(f)]));
  return x;
}

function serverNotRunning() {
  const err = new Error('Server is not running.');
  err.code = 'ERR_SERVER_NOT_RUNNING';
  return err;
}

/** Normalizes listen()'s arguments as net.Server.listen does. */
function normalizeListenArgs(args) {
  const list = [...args];
  let cb;
  if (typeof list[list.length - 1] === 'function') cb = list.pop();
  let options;
  const [a, b, c] = list;
  if (a !== null && typeof a === 'object') {
    options = { ...a };
  } else if (typeof a === 'string' && !/^\d+$/.test(a)) {
    options = { path: a };
    if (typeof b === 'number') options.backlog = b;
  } else {
    options = { port: a == null ? 0 : Number(a) };
    if (typeof b === 'string') {
      options.host = b;
      if (typeof c === 'number') options.backlog = c;
    } else if (typeof b === 'number') options.backlog = b;
  }
  return { options, cb };
}

class Server extends EventEmitter {
  /**
   * createServer([options][, connectionListener]). options: allowHalfOpen,
   * pauseOnConnect, the Socket options (window, writeWindow, ...), and
   * daemon, token, client, limit.
   */
  constructor(options, connectionListener) {
    super();
    if (typeof options === 'function') {
      connectionListener = options;
      options = {};
    }
    this._options = { ...(options || {}) };
    if (connectionListener) this.on('connection', connectionListener);
    this._client = null;
    this._serverId = null;
    this._address = null;
    this._serve = null;
    this._serveDone = null;
    this._connections = new Set();
    this._closing = false;
    this._closed = false;
    this._starting = false;
    this.maxConnections = undefined;
  }

  get listening() {
    return this._serverId !== null && !this._closing;
  }

  /**
   * listen(port[, host][, backlog][, cb]), listen(path[, cb]) or
   * listen({port, host, path, backlog}[, cb]). host defaults to 127.0.0.1
   * (the daemon's built-in policy refuses binding every interface).
   */
  listen(...args) {
    const { options, cb } = normalizeListenArgs(args);
    if (this._serverId || this._starting) {
      const err = new Error('Listen method has been called more than once without closing.');
      err.code = 'ERR_SERVER_ALREADY_LISTEN';
      throw err;
    }
    if (cb) this.once('listening', cb);
    const opts = { ...this._options, ...options };
    const req = { backlog: opts.backlog || 0 };
    let errorContext;
    if (opts.path != null) {
      req.unix = { path: String(opts.path) };
      errorContext = { address: String(opts.path) };
    } else {
      const port = opts.port == null ? 0 : Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new RangeError(`listen: port should be >= 0 and < 65536, got ${opts.port}`);
      }
      const host = opts.host == null ? '127.0.0.1' : opts.host;
      req.tcp = { host, port };
      errorContext = { address: host, port };
    }
    if (opts.limit != null) req.limit = opts.limit;
    if (opts.reusePort) req.reuse_port = true;
    this._starting = true;
    this._closing = false;
    this._closed = false;
    this._client = clientFor(opts);
    this._client.ref();
    this._client
      .unaryRaw('StartServer', req)
      .then((resp) => {
        this._starting = false;
        this._serverId = resp.server_id;
        this._sockets = resp.sockets;
        this._address = opts.path != null ? resp.sockets[0] || String(opts.path) : parseAddr(resp.sockets[0]);
        if (this._closing) {
          // close() came while StartServer was on its way.
          this._closeServer();
          return;
        }
        this._startServe();
        this.emit('listening');
      })
      .catch((err) => {
        this._starting = false;
        const client = this._client;
        this._client = null;
        client.unref();
        this.emit('error', toNodeError(err, { syscall: 'listen', daemon: client.address, ...errorContext }));
      });
    return this;
  }

  _startServe() {
    const { call, done } = this._client.longCall((stub, md) => stub.Serve({ server_id: this._serverId }, md));
    this._serve = call;
    this._serveDone = done;
    call.on('data', (resp) => this._onConnection(resp));
    let error = null;
    call.on('error', (err) => {
      error = err;
    });
    call.on('status', (status) => {
      done();
      this._serve = null;
      if (this._closing) {
        this._maybeEmitClose();
        return;
      }
      // The daemon ended Serve: the server closed (idle timeout, an admin,
      // a daemon shutdown), or the gRPC connection broke.
      if (status.code !== 0) {
        this.emit('error', toNodeError(error || status, { syscall: 'accept', daemon: this._client.address }));
      }
      this._closing = true;
      this._closeServer();
    });
  }

  _onConnection(resp) {
    const sock = new Socket({ ...this._options, allowHalfOpen: !!this._options.allowHalfOpen });
    const local = this._address && typeof this._address === 'object' ? this._address : null;
    const sockname = local ? (local.family === 'IPv6' ? `[${local.address}]:${local.port}` : `${local.address}:${local.port}`) : '';
    if (this._closing || (this.maxConnections != null && this._connections.size >= this.maxConnections)) {
      sock._accepted(this._client, resp.stream_id, resp.peername, sockname);
      sock.destroy();
      if (!this._closing) this.emit('drop', { remoteAddress: sock.remoteAddress, remotePort: sock.remotePort });
      return;
    }
    this._connections.add(sock);
    sock.once('close', () => {
      this._connections.delete(sock);
      this._maybeEmitClose();
    });
    sock._accepted(this._client, resp.stream_id, resp.peername, sockname);
    if (local && (local.address === '0.0.0.0' || local.address === '::' || local.address === '')) {
      // Bound to every interface: learn the connection's own local address.
      this._client
        .unaryRaw('GetExtraInfo', { stream_id: resp.stream_id, name: 'sockname' })
        .then((r) => {
          const v = fromValue(r.value);
          if (Array.isArray(v) && v.length >= 2) {
            sock.localAddress = String(v[0]);
            sock.localPort = Number(v[1]);
            const fam = net.isIP(sock.localAddress);
            sock.localFamily = fam === 6 ? 'IPv6' : 'IPv4';
          }
        })
        .catch(() => {});
    }
    if (this._options.pauseOnConnect) sock.pause();
    this.emit('connection', sock);
  }

  /** The bound address: {address, family, port}, or the path of a Unix server; null before 'listening'. */
  address() {
    if (!this._serverId) return null;
    return typeof this._address === 'string' ? this._address : { ...this._address };
  }

  /** Every bound address as the daemon reports it (several for a host that resolves to more than one). */
  get sockets() {
    return this._sockets ? [...this._sockets] : [];
  }

  get serverId() {
    return this._serverId;
  }

  /**
   * Stops accepting (CloseServer); 'close' once every connection closed.
   * options (a streammgr extension): {closeClients, abortClients} as the
   * daemon's CloseServer.
   */
  close(cb, options) {
    if (typeof cb === 'object' && cb !== null) [cb, options] = [options, cb];
    if (!this._serverId && !this._starting) {
      if (cb) process.nextTick(cb, serverNotRunning());
      return this;
    }
    if (cb) this.once('close', () => cb());
    if (this._closing) return this;
    this._closing = true;
    this._closeOptions = options || {};
    if (this._serverId) this._closeServer();
    return this;
  }

  _closeServer() {
    const id = this._serverId;
    const o = this._closeOptions || {};
    this._client
      .unaryRaw(
        'CloseServer',
        { server_id: id, close_clients: !!o.closeClients, abort_clients: !!o.abortClients },
        { timeoutMs: CLEANUP_TIMEOUT_MS },
      )
      .catch(() => {}) // gone already (idle timeout, shutdown)
      .then(() => {
        this._serverClosed = true;
        // CloseServer ends Serve (OK) after the connections it already
        // claimed: 'close' waits for its status, so none is lost.
        this._maybeEmitClose();
      });
  }

  _maybeEmitClose() {
    if (this._closed || !this._closing || !this._serverClosed || this._serve || this._connections.size > 0) return;
    this._closed = true;
    this._serverId = null;
    this._serverClosed = false;
    const client = this._client;
    this._client = null;
    if (client) client.unref();
    process.nextTick(() => this.emit('close'));
  }

  getConnections(cb) {
    const n = this._connections.size;
    if (cb) process.nextTick(cb, null, n);
    return this;
  }

  /** No-ops: the server keeps the process alive through its Serve call. */
  ref() {
    return this;
  }

  unref() {
    return this;
  }

  async [Symbol.asyncDispose]() {
    await new Promise((resolve) => this.close(() => resolve()));
  }
}

/** net.createServer through the daemon. */
function createServer(options, connectionListener) {
  return new Server(options, connectionListener);
}

module.exports = { Server, createServer, normalizeListenArgs, fromValue };
