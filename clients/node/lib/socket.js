'use strict';
// Socket: a net.Socket-like stream.Duplex over one streammgrd stream,
// driven through the Attach RPC (a raw byte pipe).
//
// Inbound: the daemon sends what the socket receives, at most `window`
// bytes ahead of our acknowledgements. Received bytes wait in a queue and
// are pushed into the Readable only as it asks for them (_read), so the
// consumer's pace sets the pace: a byte is acknowledged once it has been
// pushed, i.e. once the Readable's buffer (readableHighWaterMark) had room
// for it. A consumer that stops reading stops the acks, the daemon stops
// reading the socket after `window` bytes, and TCP pushes back on the peer.
//
// Outbound: data goes out as Attach messages, each with its outbound
// offset. The daemon reports how much it accepted (`written`); at most
// `writeWindow` bytes are sent and not yet accepted. Past that the write
// callback waits, so write() returns false and 'drain' comes once the
// daemon (and so the peer) has taken bytes. This also bounds the data
// that can sit ahead of an ack in the request stream (acks share it with
// data, and the daemon reads a message only once it has taken the one
// before); the stall that can still come of it is broken by attaching
// again (_watchStall, _resume), which the offsets make lossless.
const { Duplex } = require('node:stream');
const net = require('node:net');
const { clientFor } = require('./client');
const { toNodeError } = require('./errors');
const readers = require('./readers');

const DEFAULT_WINDOW = 4 << 20; // the daemon's default
const MIN_WINDOW = 1 << 20;
const MAX_WINDOW = 64 << 20; // the daemon's limit
const DEFAULT_WRITE_WINDOW = 2 << 20;
const REPORT_STEP = 256 << 10; // the daemon reports `written` every 256 KiB
const DEFAULT_MAX_MESSAGE = 256 << 10;

/**
 * The windows, as the daemon's Attach needs them. The daemon takes one
 * request message at a time and, above its write high-water mark, takes
 * the next only once the peer has read the last: an ack waits behind every
 * unaccepted byte sent before it. The fewer such bytes (writeWindow), the
 * more of the window is left for what the peer sends meanwhile, so
 * writeWindow is kept to half the window: measured with an echo peer,
 * writeWindow >= window stalls at once, window / 2 rarely (a stall is
 * then broken by _watchStall). writeWindow is also kept above the daemon's
 * 256 KiB `written` step plus one message, or the sender could wait for a
 * report that is not due.
 */
function windows(options) {
  const window = Math.min(Math.max(options.window || DEFAULT_WINDOW, MIN_WINDOW), MAX_WINDOW);
  const maxMessage = Math.min(Math.max(1024, options.maxMessageSize || DEFAULT_MAX_MESSAGE), window / 4);
  const writeWindow = Math.max(Math.min(options.writeWindow || DEFAULT_WRITE_WINDOW, window / 2), REPORT_STEP + maxMessage);
  return { window, writeWindow, maxMessage };
}
const CLEANUP_TIMEOUT_MS = 10000;
// How long the stall _watchStall recognizes must last before a resume.
const STALL_MS = 50;

/** Splits "host:port" / "[v6]:port" into {address, port, family}; a Unix path gives {path}. */
function parseAddr(s) {
  if (!s) return {};
  const m = /^\[([^\]]*)\]:(\d+)$/.exec(s) || /^([^:]*):(\d+)$/.exec(s);
  if (!m) return { path: s };
  const address = m[1];
  const fam = net.isIP(address);
  return { address, port: Number(m[2]), family: fam === 6 ? 'IPv6' : fam === 4 ? 'IPv4' : undefined };
}

function durationOf(ms) {
  return { seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) };
}

/** Normalizes connect()'s arguments as net.connect does: (options[, cb]), (port[, host][, cb]), (path[, cb]). */
function normalizeConnectArgs(args) {
  let [a, b, c] = args;
  let cb;
  let options;
  if (a !== null && typeof a === 'object') {
    options = { ...a };
    if (typeof b === 'function') cb = b;
    else if (b && typeof b === 'object') {
      options = { ...b, ...a };
      if (typeof c === 'function') cb = c;
    }
  } else if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a))) {
    options = { port: Number(a) };
    if (typeof b === 'string') {
      options.host = b;
      if (typeof c === 'function') cb = c;
    } else if (typeof b === 'function') cb = b;
  } else if (typeof a === 'string') {
    options = { path: a };
    if (typeof b === 'function') cb = b;
  } else {
    throw new TypeError('connect: expected options, a port or a path');
  }
  return { options, cb };
}

class Socket extends Duplex {
  /**
   * @param {object} [options]
   * @param {boolean} [options.allowHalfOpen] as net.Socket's (default false:
   *   the peer's EOF ends our side too)
   * @param {number} [options.window] inbound bytes in flight unacknowledged (default 4 MiB; 1 to 64 MiB)
   * @param {number} [options.writeWindow] outbound bytes sent and not yet accepted by the daemon
   *   (default 2 MiB; at most window / 2, see windows())
   * @param {number} [options.maxMessageSize] largest data message sent (default 256 KiB; keep it
   *   below the daemon's --max-message-size)
   * @param {number} [options.readableHighWaterMark]
   * @param {number} [options.writableHighWaterMark]
   */
  constructor(options = {}) {
    super({
      allowHalfOpen: !!options.allowHalfOpen,
      emitClose: false, // 'close' comes with hadError, once the daemon's stream is released
      autoDestroy: true,
      decodeStrings: true,
      readableHighWaterMark: options.readableHighWaterMark,
      writableHighWaterMark: options.writableHighWaterMark,
    });
    this._smOptions = options;
    this.connecting = false;
    this.pending = true;
    this.streamId = null;
    this.remoteAddress = undefined;
    this.remotePort = undefined;
    this.remoteFamily = undefined;
    this.localAddress = undefined;
    this.localPort = undefined;
    this.localFamily = undefined;
    this.peername = undefined; // the daemon's peername / sockname strings
    this.sockname = undefined;
    this.timeout = undefined;

    const { window, writeWindow, maxMessage } = windows(options);
    this._sm = {
      client: null,
      hasRef: false,
      syscall: 'read',
      window,
      writeWindow,
      maxMessage,
      call: null,
      attached: false,
      halfClosedCall: false, // our side of the gRPC call ended
      callEnded: false,
      callStatus: null,
      callError: null,
      // inbound
      queue: [],
      queued: 0,
      inOffset: 0, // inbound offset after the bytes received
      pushed: 0, // inbound offset after the bytes pushed (the ack)
      acked: 0, // the last ack sent
      wantRead: false,
      eofReceived: false,
      eofPushed: false,
      bytesRead: 0,
      // outbound
      out: [], // Buffers waiting to be sent
      outBytes: 0,
      outCb: null, // the pending _write/_writev callback
      outSent: 0, // outbound offset after the bytes sent
      written: 0, // outbound bytes the daemon accepted
      outStart: 0,
      finalCb: null,
      writeEofSent: false,
      pokeAllowed: false,
      sentChunks: [], // sent and not yet accepted: {off, buf}, for a resume
      ackLog: [], // acks sent behind unaccepted bytes: {pos, val}
      ackedConfirmed: 0, // the daemon has taken our acks up to here
      current: null, // the Attach call in use: {call, done, ...}
      resuming: false,
      resumes: 0,
      stallTimer: null,
      // lifecycle
      destroyedEarly: false,
      closeEmitted: false,
      timer: null,
    };
  }

  get bytesRead() {
    return this._sm.bytesRead;
  }

  /** Bytes written by the application, including those not yet sent (as net.Socket). */
  get bytesWritten() {
    return this._sm.outSent - this._sm.outStart + this._sm.outBytes + this.writableLength;
  }

  get readyState() {
    if (this.connecting) return 'opening';
    if (this.readable && this.writable) return 'open';
    if (this.readable && !this.writable) return 'readOnly';
    if (!this.readable && this.writable) return 'writeOnly';
    return 'closed';
  }

  /**
   * Connects through the daemon: connect(options[, cb]) with {host, port}
   * or {path}, connect(port[, host][, cb]) or connect(path[, cb]).
   * options also takes daemon, token, client, connectTimeout (ms), limit,
   * localAddress/localPort and tls (true, or {servername, ca,
   * rejectUnauthorized, ALPNProtocols, cert, key}: TLS made by the daemon).
   */
  connect(...args) {
    const { options, cb } = normalizeConnectArgs(args);
    const opts = { ...this._smOptions, ...options };
    if (cb) this.once('connect', cb);
    if (this.connecting || this.streamId) throw new Error('streammgr: socket already connecting or connected');
    const req = {};
    let errorContext;
    if (opts.path != null) {
      req.unix = { path: String(opts.path) };
      errorContext = { address: String(opts.path) };
    } else {
      const host = opts.host || 'localhost';
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new RangeError(`connect: port should be >= 0 and < 65536, got ${opts.port}`);
      }
      req.tcp = { host, port };
      errorContext = { address: host, port };
    }
    if (opts.tls) {
      // TLS by the daemon (Open's tls): verified against ca (PEM) or the
      // system roots, with servername (default: host) as SNI.
      const o = opts.tls === true ? {} : opts.tls;
      req.tls = {
        server_hostname: o.servername || '',
        ca_pem: o.ca ? String(o.ca) : '',
        insecure_skip_verify: o.rejectUnauthorized === false,
        alpn_protocols: o.ALPNProtocols || [],
      };
      if (o.cert) req.tls.cert_pem = String(o.cert);
      if (o.key) req.tls.key_pem = String(o.key);
      this._sm.tls = true;
    }
    if (opts.limit != null) req.limit = opts.limit;
    if (opts.connectTimeout) req.connect_timeout = durationOf(opts.connectTimeout);
    if (opts.localAddress || opts.localPort) req.local_addr = { host: opts.localAddress || '', port: opts.localPort || 0 };
    if (opts.timeout) this.setTimeout(opts.timeout);

    this._useClient(clientFor(opts));
    this.connecting = true;
    this._sm.syscall = 'connect';
    this._sm.opening = true;
    this._sm.client.unaryRaw('Open', req).then(
      (resp) => {
        this._sm.opening = false;
        if (this.destroyed) {
          // destroy() came while Open was on its way: abort the new stream.
          this._abortStream(resp.stream_id);
          return;
        }
        this._setAddresses(resp.peername, resp.sockname);
        this._attach(resp.stream_id, 'connect', errorContext);
      },
      (err) => {
        this._sm.opening = false;
        if (this.destroyed) {
          this._releaseClient();
          return;
        }
        this.destroy(toNodeError(err, { syscall: 'connect', daemon: this._sm.client.address, ...errorContext }));
      },
    );
    return this;
  }

  _useClient(client) {
    this._sm.client = client;
    if (!this._sm.hasRef) {
      client.ref();
      this._sm.hasRef = true;
    }
  }

  _setAddresses(peername, sockname) {
    this.peername = peername;
    this.sockname = sockname;
    const r = parseAddr(peername);
    this.remoteAddress = r.address;
    this.remotePort = r.port;
    this.remoteFamily = r.family;
    const l = parseAddr(sockname);
    this.localAddress = l.address;
    this.localPort = l.port;
    this.localFamily = l.family;
  }

  /** Takes over an accepted stream (Server): attaches at once. */
  _accepted(client, streamId, peername, sockname, onAttached) {
    this._useClient(client);
    this._setAddresses(peername, sockname);
    this.connecting = true;
    this._attach(streamId, 'accept', {}, onAttached);
  }

  _abortStream(streamId) {
    const client = this._sm.client;
    client
      .unaryRaw('Abort', { stream_id: streamId }, { timeoutMs: CLEANUP_TIMEOUT_MS })
      .catch(() => {})
      .finally(() => this._releaseClient());
  }

  _releaseClient() {
    if (this._sm.hasRef) {
      this._sm.hasRef = false;
      this._sm.client.unref();
    }
  }

  _attach(streamId, why, errorContext, onAttached) {
    const sm = this._sm;
    this.streamId = streamId;
    sm.errorContext = errorContext;
    this._startCall({ stream_id: streamId, window: sm.window }, (resp) => this._onAttached(resp, why, onAttached));
  }

  /**
   * Starts an Attach call with first message `first`; onFirst gets the
   * first response. Responses and the status of a call that is no longer
   * the socket's (one a resume replaced) are ignored.
   */
  _startCall(first, onFirst) {
    const sm = this._sm;
    const { call, done } = sm.client.longCall((stub, md) => stub.Attach(md));
    const c = { call, done, first: true, status: null, error: null, sawEnd: false, ended: false };
    sm.call = call;
    sm.current = c;
    const current = () => sm.current === c;
    const ended = () => {
      if (c.ended) return;
      c.ended = true;
      done();
      if (current()) {
        sm.callStatus = c.status;
        sm.callError = c.error;
        this._onCallEnded();
      }
    };
    call.on('data', (resp) => {
      if (!current()) return;
      if (c.first) {
        c.first = false;
        onFirst(resp);
      } else {
        this._onResponse(resp);
      }
    });
    call.on('error', (err) => {
      c.error = err;
    });
    call.on('status', (status) => {
      c.status = status;
      if (c.sawEnd || status.code !== 0) ended();
    });
    call.on('end', () => {
      c.sawEnd = true;
      if (c.status) ended();
    });
    call.write(first);
  }

  _onAttached(resp, why, onAttached) {
    const sm = this._sm;
    sm.attached = true;
    sm.inOffset = sm.pushed = sm.acked = sm.ackedConfirmed = resp.offset;
    sm.outSent = sm.written = sm.outStart = resp.written;
    this.connecting = false;
    this.pending = false;
    sm.syscall = 'read';
    if (this.destroyed) return;
    this._refreshTimer();
    if (why === 'connect') {
      this.emit('connect');
      this.emit('ready');
    } else if (onAttached) {
      onAttached();
    }
    this._pump();
    this._flushOut();
    if (sm.finalCb && !sm.writeEofSent) this._sendWriteEof();
  }

  _onResponse(resp) {
    const sm = this._sm;
    if (resp.written > sm.written) this._onWritten(resp.written);
    const n = resp.data ? resp.data.length : 0;
    if (n > 0) {
      if (resp.offset !== sm.inOffset) {
        this.destroy(new Error(`streammgr: Attach delivered offset ${resp.offset}, expected ${sm.inOffset}`));
        return;
      }
      sm.queue.push(resp.data);
      sm.queued += n;
      sm.inOffset += n;
      sm.bytesRead += n;
      this._refreshTimer();
    }
    if (resp.eof) sm.eofReceived = true;
    sm.pokeAllowed = true;
    this._pump();
    this._flushOut();
    this._checkFinal();
    this._maybeEndCall();
    this._watchStall();
  }

  /** The daemon accepted outbound bytes up to w: forget them, and confirm the acks sent before them. */
  _onWritten(w) {
    const sm = this._sm;
    sm.written = w;
    while (sm.sentChunks.length > 0 && sm.sentChunks[0].off + sm.sentChunks[0].buf.length <= w) sm.sentChunks.shift();
    // An ack sent when the outbound offset was pos comes before the bytes
    // from pos on: once some of them were accepted, the daemon had taken it.
    while (sm.ackLog.length > 0 && sm.ackLog[0].pos < w) {
      sm.ackedConfirmed = Math.max(sm.ackedConfirmed, sm.ackLog.shift().val);
    }
  }

  _read() {
    this._sm.wantRead = true;
    this._pump();
  }

  /** Pushes queued bytes while the Readable wants them, then acknowledges them. */
  _pump() {
    const sm = this._sm;
    if (!sm.attached || this.destroyed) return;
    while (sm.wantRead && sm.queue.length > 0) {
      const chunk = sm.queue.shift();
      sm.queued -= chunk.length;
      sm.pushed += chunk.length;
      if (!this.push(chunk)) sm.wantRead = false;
      if (this.destroyed) return;
    }
    if (sm.queue.length === 0 && sm.eofReceived && !sm.eofPushed) {
      sm.eofPushed = true;
      this.push(null);
    }
    this._sendAck();
    this._watchStall();
  }

  /** The ack field for a message, when one is due (recorded for _onWritten). */
  _ackField() {
    const sm = this._sm;
    if (sm.pushed <= sm.acked || sm.eofReceived) return undefined;
    sm.acked = sm.pushed;
    if (sm.outSent > sm.written) sm.ackLog.push({ pos: sm.outSent, val: sm.pushed });
    else sm.ackedConfirmed = Math.max(sm.ackedConfirmed, sm.pushed); // nothing ahead of it
    return sm.pushed;
  }

  _canSend() {
    const sm = this._sm;
    return sm.attached && !sm.resuming && sm.call && !sm.halfClosedCall && !sm.callEnded && !this.destroyed;
  }

  _sendAck() {
    const sm = this._sm;
    if (!this._canSend()) return;
    const ack = this._ackField();
    if (ack !== undefined) sm.call.write({ ack });
  }

  _write(chunk, encoding, cb) {
    this._writev([{ chunk }], cb);
  }

  _writev(chunks, cb) {
    const sm = this._sm;
    for (const { chunk } of chunks) {
      if (chunk.length > 0) {
        sm.out.push(chunk);
        sm.outBytes += chunk.length;
      }
    }
    sm.outCb = cb;
    this._refreshTimer();
    this._flushOut();
  }

  /** Sends waiting bytes within the write window; completes the write callback once all are sent. */
  _flushOut() {
    const sm = this._sm;
    if (!this._canSend()) return;
    while (sm.outBytes > 0) {
      const free = sm.writeWindow - (sm.outSent - sm.written);
      const want = Math.min(sm.outBytes, sm.maxMessage);
      if (free < want) break;
      const data = this._takeOut(want);
      const msg = { data, offset: sm.outSent };
      const ack = this._ackField();
      if (ack !== undefined) msg.ack = ack;
      sm.sentChunks.push({ off: sm.outSent, buf: data });
      sm.outSent += data.length;
      sm.call.write(msg);
    }
    if (sm.outBytes === 0) {
      const cb = sm.outCb;
      if (cb) {
        sm.outCb = null;
        cb();
      }
    } else if (sm.pokeAllowed) {
      // Held back: ask the daemon for a fresh `written` (it reports one
      // when it has taken the messages before this empty one).
      sm.pokeAllowed = false;
      sm.call.write({});
    }
    this._watchStall();
  }

  /**
   * The daemon reads one Attach message at a time and, above its write
   * high-water mark, reads the next only once the peer took the last: an
   * ack behind unaccepted data waits for the peer. With a peer that echoes
   * (or otherwise writes only as it can read), the backlog in the kernel
   * buffers between the peer and the daemon can fill the window while the
   * ack waits, and then nobody moves: the daemon waits for the ack to read
   * the socket, the peer for the daemon to read its answers before it
   * reads more, the ack for the peer. That state is recognized here: bytes
   * unaccepted, the daemon's window full by the acks it has provably
   * taken, and no progress either way for STALL_MS. It is broken by
   * attaching again (_resume): the new Attach's first message carries the
   * offset we reached, which the daemon takes at once.
   */
  _watchStall() {
    const sm = this._sm;
    if (sm.stallTimer || !this._canSend()) return;
    if (!this._stalled()) return;
    const mark = { written: sm.written, inOffset: sm.inOffset };
    sm.stallTimer = setTimeout(() => {
      sm.stallTimer = null;
      if (!this._canSend() || !this._stalled()) return;
      if (sm.written === mark.written && sm.inOffset === mark.inOffset) this._resume();
      else this._watchStall();
    }, STALL_MS);
    if (sm.stallTimer.unref) sm.stallTimer.unref();
  }

  _stalled() {
    const sm = this._sm;
    // An ack of ours is waiting (pushed past what the daemon took), behind
    // unaccepted bytes, and the daemon's window is full by what it took. (A
    // consumer that does not read sends no ack: that is backpressure, and
    // nothing to break.)
    return (
      sm.outSent > sm.written &&
      !sm.eofReceived &&
      sm.pushed > sm.ackedConfirmed &&
      sm.inOffset - sm.ackedConfirmed >= sm.window
    );
  }

  /** Attaches again (see _watchStall): no byte lost or duplicated, by the offsets. */
  _resume() {
    const sm = this._sm;
    sm.resuming = true;
    sm.resumes++;
    const old = sm.current;
    // Resume from what the consumer took (the new call's offset counts as
    // an ack): the bytes received but not yet pushed come again, so the
    // window still follows the consumer.
    sm.bytesRead -= sm.queued;
    sm.inOffset = sm.pushed;
    sm.queue = [];
    sm.queued = 0;
    this._startCall({ stream_id: this.streamId, offset: sm.inOffset, window: sm.window }, (resp) => {
      // The daemon ended the old call (ATTACH_SUPERSEDED); it is not ours any more.
      old.call.cancel();
      sm.resuming = false;
      if (resp.offset !== sm.inOffset) {
        this.destroy(new Error(`streammgr: Attach resumed at ${resp.offset}, expected ${sm.inOffset}`));
        return;
      }
      // The new call's window starts here: everything before is acknowledged.
      sm.acked = Math.max(sm.acked, sm.inOffset);
      sm.ackedConfirmed = sm.inOffset;
      sm.ackLog = [];
      if (resp.written > sm.written) this._onWritten(resp.written);
      // What the old call had not delivered to the daemon, again (a part
      // already accepted is skipped by its offset).
      for (const { off, buf } of sm.sentChunks) sm.call.write({ data: buf, offset: off });
      if (sm.writeEofSent && !sm.tls) sm.call.write({ write_eof: true });
      sm.pokeAllowed = true;
      this._pump();
      this._flushOut();
      this._checkFinal();
      this._maybeEndCall();
    });
  }

  _takeOut(n) {
    const sm = this._sm;
    const parts = [];
    let got = 0;
    while (got < n) {
      const b = sm.out[0];
      const need = n - got;
      if (b.length <= need) {
        parts.push(b);
        sm.out.shift();
        got += b.length;
      } else {
        parts.push(b.subarray(0, need));
        sm.out[0] = b.subarray(need);
        got += need;
      }
    }
    sm.outBytes -= n;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }

  _final(cb) {
    const sm = this._sm;
    sm.finalCb = cb;
    if (sm.attached && !sm.writeEofSent) this._sendWriteEof();
  }

  _sendWriteEof() {
    const sm = this._sm;
    if (this.destroyed || sm.callEnded) return;
    sm.writeEofSent = true;
    if (sm.resuming) return; // the resumed call sends it
    if (sm.tls) {
      // TLS has no half-close (the daemon's WRITE_EOF_UNSUPPORTED, as
      // asyncio's): end() only flushes; the stream is closed with the
      // socket (Close once both sides are done).
      this._checkFinal();
      this._maybeEndCall();
      return;
    }
    const msg = { write_eof: true };
    const ack = this._ackField();
    if (ack !== undefined) msg.ack = ack;
    sm.call.write(msg);
    this._checkFinal();
    this._maybeEndCall();
  }

  /** 'finish' once the daemon accepted every byte (write_eof follows them). */
  _checkFinal() {
    const sm = this._sm;
    if (sm.finalCb && sm.writeEofSent && sm.written >= sm.outSent) {
      const cb = sm.finalCb;
      sm.finalCb = null;
      cb();
    }
  }

  /** Ends our side of the call once write_eof is sent and the peer's EOF came: the call then ends OK. */
  _maybeEndCall() {
    const sm = this._sm;
    if (sm.call && !sm.resuming && !sm.halfClosedCall && sm.writeEofSent && sm.eofReceived) {
      sm.halfClosedCall = true;
      sm.call.end();
    }
  }

  _onCallEnded() {
    const sm = this._sm;
    if (sm.callEnded) return;
    sm.callEnded = true;
    const status = sm.callStatus;
    if (this.destroyed) return;
    if (status && status.code === 0) {
      // OK: the peer's EOF was delivered and our side was closed.
      if (!sm.eofReceived) {
        sm.eofReceived = true;
        this._pump();
      }
      return;
    }
    const err = toNodeError(sm.callError || status, {
      syscall: sm.syscall,
      daemon: sm.client.address,
      ...(sm.syscall === 'connect' ? sm.errorContext : {}),
    });
    // What arrived before the error goes to the consumer first, as far as
    // its buffer takes it.
    sm.wantRead = true;
    this._pump();
    if (!this.destroyed) this.destroy(err);
  }

  _destroy(err, cb) {
    const sm = this._sm;
    this._clearTimer();
    const call = sm.call;
    const streamId = this.streamId;
    const client = sm.client;
    const clean = !err && sm.eofPushed && sm.writeEofSent && sm.finalCb === null;
    const tasks = [];
    if (streamId && client) {
      if (clean) {
        // Both directions are done: release the daemon's stream.
        tasks.push(client.unaryRaw('Close', { stream_id: streamId }, { timeoutMs: CLEANUP_TIMEOUT_MS }).catch(() => {}));
      } else {
        // destroy(): discard what is not sent, close at once.
        tasks.push(client.unaryRaw('Abort', { stream_id: streamId }, { timeoutMs: CLEANUP_TIMEOUT_MS }).catch(() => {}));
      }
    }
    if (sm.stallTimer) {
      clearTimeout(sm.stallTimer);
      sm.stallTimer = null;
    }
    const cur = sm.current;
    if (cur && !cur.ended) {
      if (clean && sm.halfClosedCall && !sm.resuming) {
        // It ends OK by itself.
        tasks.push(new Promise((resolve) => (cur.status ? resolve() : call.once('status', resolve))));
      } else if (!cur.first) {
        call.cancel();
      } else {
        // Not attached yet: a cancel in the tick the call starts can be
        // lost (grpc-js), leaving the daemon's Attach running. Cancel once
        // the daemon has answered (or the call ended).
        const cancel = () => call.cancel();
        call.once('data', cancel);
        call.once('status', () => call.removeListener('data', cancel));
      }
    }
    if (sm.outCb) {
      const wcb = sm.outCb;
      sm.outCb = null;
      process.nextTick(wcb, err || new Error('streammgr: socket destroyed'));
    }
    sm.finalCb = null;
    this.connecting = false;
    this.pending = true;
    cb(err);
    const hadError = !!err;
    Promise.all(tasks).then(() => {
      if (!sm.opening) this._releaseClient(); // else when Open answers
      setImmediate(() => {
        sm.closeEmitted = true;
        this.emit('close', hadError);
      });
    });
    // A connect still waiting for Open aborts the stream when Open answers
    // (connect()), and releases the client then.
  }

  /** destroy() and resetAndDestroy(): both abort the daemon's stream. */
  resetAndDestroy() {
    return this.destroy();
  }

  /** net.Socket.setTimeout: 'timeout' after ms without activity (0 disables). */
  setTimeout(ms, cb) {
    this.timeout = ms || undefined;
    if (cb) {
      if (ms) this.once('timeout', cb);
      else this.removeListener('timeout', cb);
    }
    this._refreshTimer();
    return this;
  }

  _refreshTimer() {
    const sm = this._sm;
    this._clearTimer();
    if (!this.timeout || this.destroyed) return;
    sm.timer = setTimeout(() => {
      sm.timer = null;
      this.emit('timeout');
    }, this.timeout);
    if (sm.timer.unref) sm.timer.unref();
  }

  _clearTimer() {
    if (this._sm.timer) {
      clearTimeout(this._sm.timer);
      this._sm.timer = null;
    }
  }

  /**
   * Accepted, no-op: the daemon's TCP sockets already have TCP_NODELAY
   * set (Go's default) and keep-alive on (Go's default, 15 s).
   */
  setNoDelay() {
    return this;
  }

  setKeepAlive() {
    return this;
  }

  /** No-ops: the socket keeps the process alive through its gRPC call. */
  ref() {
    return this;
  }

  unref() {
    return this;
  }

  /** The local address: {address, family, port}; {} for a Unix socket (as net). */
  address() {
    if (this.localAddress === undefined) return {};
    return { address: this.localAddress, family: this.localFamily, port: this.localPort };
  }

  /** asyncio's readline() on this socket (see readers.readLine). */
  readLine(options) {
    return readers.readLine(this, options);
  }

  readExactly(n) {
    return readers.readExactly(this, n);
  }

  readUntil(separator, options) {
    return readers.readUntil(this, separator, options);
  }

  /** The daemon's figures for this stream (ListStreams' StreamInfo), or null. */
  async stats() {
    const r = await this._sm.client.unary('ListStreams', {});
    return r.streams.find((s) => s.stream_id === this.streamId) || null;
  }
}

/**
 * A Socket on a stream that already exists in the daemon (opened with the
 * unary Open, OpenPair or Accept calls, perhaps by another program it is
 * shared with). Resolves once attached.
 */
function attach(streamId, options = {}) {
  const sock = new Socket(options);
  return new Promise((resolve, reject) => {
    const onError = (err) => reject(err);
    sock.once('error', onError);
    sock._accepted(clientFor(options), streamId, options.peername || '', options.sockname || '', () => {
      sock.removeListener('error', onError);
      resolve(sock);
    });
  });
}

/**
 * A connected pair of sockets made by the daemon (OpenPair: asyncio's
 * socket.socketpair()): what one writes the other reads.
 */
async function socketPair(options = {}) {
  const client = clientFor(options);
  client.ref(); // held while the pair is being made
  try {
    const req = options.limit != null ? { limit: options.limit } : {};
    const resp = await client.unary('OpenPair', req, { syscall: 'socketpair' });
    const results = await Promise.allSettled([
      attach(resp.first_stream_id, { ...options, client }),
      attach(resp.second_stream_id, { ...options, client }),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      for (const r of results) if (r.status === 'fulfilled') r.value.destroy();
      throw failed.reason;
    }
    return results.map((r) => r.value);
  } finally {
    client.unref();
  }
}

/** net.connect / net.createConnection through the daemon. */
function connect(...args) {
  const { options, cb } = normalizeConnectArgs(args);
  const sock = new Socket(options);
  return sock.connect(options, cb);
}

module.exports = { Socket, connect, attach, socketPair, parseAddr, normalizeConnectArgs, windows };
