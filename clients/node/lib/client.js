'use strict';
// The connection to streammgrd: its address, the bearer token, and a small
// pool of gRPC channels. Each socket holds one Attach call and each server
// one Serve call for as long as it lives, and the daemon lets one gRPC
// connection carry --max-concurrent-streams calls (256 by default; further
// calls wait), so a Client spreads its long calls over channels of at most
// `callsPerChannel` each, every channel its own HTTP/2 connection, and
// keeps room on each for the short unary calls (Open, Close, Abort, ...).
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { service } = require('./proto');
const { toNodeError } = require('./errors');

const ADDR_ENV = 'STREAMMGR_ADDR';
const TOKEN_ENV = 'STREAMMGR_TOKEN';

/**
 * The daemon's default address, as the daemon computes its default
 * socket: $STREAMMGR_ADDR, else unix:$XDG_RUNTIME_DIR/streammgrd.sock, else
 * unix:/tmp/streammgrd-$UID/streammgrd.sock.
 */
function defaultAddress(env = process.env) {
  if (env[ADDR_ENV]) return env[ADDR_ENV];
  if (env.XDG_RUNTIME_DIR) return `unix:${path.join(env.XDG_RUNTIME_DIR, 'streammgrd.sock')}`;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return `unix:/tmp/streammgrd-${uid}/streammgrd.sock`;
}

/**
 * 'unix:/path', 'unix:///path', 'unix:relative' or 'host:port' (also
 * '[::1]:port') to a grpc-js target. Abstract socket names (unix:@name)
 * are refused: grpc-js cannot dial them.
 */
function grpcTarget(address) {
  if (address.startsWith('unix:')) {
    let p = address.slice('unix:'.length);
    if (p.startsWith('//')) p = p.slice(2);
    if (p.startsWith('@')) {
      throw new Error(`${address}: abstract Unix socket addresses are not supported by grpc-js; use unix:/path or host:port`);
    }
    return `unix://${path.resolve(p)}`;
  }
  if (address.startsWith('/')) return `unix://${address}`;
  return address;
}

const DEFAULT_CALLS_PER_CHANNEL = 128;

/** One gRPC channel (its own HTTP/2 connection) and its long calls. */
class Channel {
  constructor(client, index) {
    const { StreamService } = service();
    this.index = index;
    this.longCalls = 0;
    this.stub = new StreamService(client.target, client.credentials, {
      ...client.channelOptions,
      // A channel of its own, not shared with the client's other channels
      // through grpc-js's global subchannel pool: its own connection.
      'grpc.use_local_subchannel_pool': 1,
      'streammgr.channel': index,
    });
  }

  close() {
    // Not this.stub.close(): the generated client has the Close RPC as a
    // method under that name too.
    grpc.Client.prototype.close.call(this.stub);
  }
}

/**
 * A connection to streammgrd. connect() and createServer() use a shared
 * Client per daemon address and token, closed when its last socket or
 * server closes; pass `client` in their options to use your own.
 */
class Client {
  /**
   * @param {object} [options]
   * @param {string} [options.daemon] 'unix:/path' or 'host:port' (default: defaultAddress())
   * @param {string} [options.token] bearer token (default: $STREAMMGR_TOKEN)
   * @param {grpc.ChannelCredentials} [options.credentials] default: insecure
   *   (a Unix socket, or a daemon run with --insecure-tcp); TLS:
   *   grpc.credentials.createSsl(ca, key, cert)
   * @param {number} [options.callsPerChannel] long calls per gRPC connection (default 128)
   * @param {object} [options.channelOptions] more grpc-js channel options
   */
  constructor(options = {}) {
    this.address = options.daemon || defaultAddress();
    this.target = grpcTarget(this.address);
    const token = options.token !== undefined ? options.token : process.env[TOKEN_ENV];
    this.token = token || '';
    this.credentials = options.credentials || grpc.credentials.createInsecure();
    this.callsPerChannel = options.callsPerChannel || DEFAULT_CALLS_PER_CHANNEL;
    this.channelOptions = {
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.max_send_message_length': 64 << 20,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      ...(options.channelOptions || {}),
    };
    this.channels = [];
    this.closed = false;
    this.refs = 0;
    this.onIdle = null; // set for shared clients: closes them when unreferenced
  }

  /** The call metadata: the bearer token, when there is one. */
  metadata() {
    const md = new grpc.Metadata();
    if (this.token) md.set('authorization', `Bearer ${this.token}`);
    return md;
  }

  channel(forLongCall) {
    if (this.closed) throw new Error('streammgr: the client is closed');
    let best = null;
    for (const ch of this.channels) {
      if (!forLongCall) {
        if (!best || ch.longCalls < best.longCalls) best = ch;
      } else if (ch.longCalls < this.callsPerChannel && (!best || ch.longCalls > best.longCalls)) {
        best = ch; // pack long calls onto the fullest channel with room
      }
    }
    if (!best) {
      best = new Channel(this, this.channels.length);
      this.channels.push(best);
    }
    return best;
  }

  /** Starts a long (streaming) call on a channel with room; done() gives its place back. */
  longCall(start) {
    const ch = this.channel(true);
    ch.longCalls++;
    let released = false;
    const call = start(ch.stub, this.metadata());
    const done = () => {
      if (released) return;
      released = true;
      ch.longCalls--;
      this.trimChannels();
    };
    return { call, done };
  }

  /** Closes the channels that carry no long call, but the first. */
  trimChannels() {
    for (let i = this.channels.length - 1; i > 0; i--) {
      const ch = this.channels[i];
      if (ch.longCalls !== 0 || i !== this.channels.length - 1) break;
      this.channels.pop();
      // Unary calls in flight on it finish first: grpc-js closes a channel
      // once its calls are done.
      ch.close();
    }
  }

  /**
   * One unary RPC; rejects with the raw grpc-js error (see toNodeError).
   * @param {string} method e.g. 'Open'
   * @param {object} request
   * @param {{timeoutMs?: number}} [opts]
   */
  unaryRaw(method, request, { timeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      let ch;
      try {
        ch = this.channel(false);
      } catch (e) {
        reject(e);
        return;
      }
      const options = timeoutMs ? { deadline: new Date(Date.now() + timeoutMs) } : {};
      ch.stub[method](request, this.metadata(), options, (err, resp) => (err ? reject(err) : resolve(resp)));
    });
  }

  /** One unary RPC; rejects with a Node-style error. */
  async unary(method, request, opts = {}) {
    try {
      return await this.unaryRaw(method, request, opts);
    } catch (err) {
      throw toNodeError(err, { syscall: opts.syscall || method, daemon: this.address, ...(opts.errorContext || {}) });
    }
  }

  /** ListStreams: {streams, buffered_bytes, max_buffered_bytes}. */
  listStreams() {
    return this.unary('ListStreams', {});
  }

  /** ListServers: {servers, buffered_bytes, max_buffered_bytes}. */
  listServers() {
    return this.unary('ListServers', {});
  }

  ref() {
    this.refs++;
    return this;
  }

  unref() {
    if (--this.refs === 0 && this.onIdle) this.onIdle();
    return this;
  }

  /** Closes every channel; calls in flight finish first. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const ch of this.channels) ch.close();
    this.channels = [];
  }
}

// Shared clients, per daemon address and token.
const shared = new Map();

/** The shared Client for these options (see Client), or options.client. */
function clientFor(options = {}) {
  if (options.client) return options.client;
  const daemon = options.daemon || defaultAddress();
  const token = options.token !== undefined ? options.token : process.env[TOKEN_ENV] || '';
  const key = `${daemon}\0${token}`;
  let c = shared.get(key);
  if (!c || c.closed) {
    c = new Client({ daemon, token, credentials: options.credentials });
    c.onIdle = () => {
      if (shared.get(key) === c) shared.delete(key);
      c.close();
    };
    shared.set(key, c);
  }
  return c;
}

module.exports = { Client, clientFor, defaultAddress, grpcTarget, ADDR_ENV, TOKEN_ENV };
