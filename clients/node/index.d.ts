// Type definitions for streammgr (the Node client of streammgrd).
/// <reference types="node" />

import { Duplex, Readable } from 'node:stream';
import { EventEmitter } from 'node:events';
import type { ChannelCredentials } from '@grpc/grpc-js';

/** Where the daemon is and who we are to it. */
export interface DaemonOptions {
  /** 'unix:/path' or 'host:port' (default: $STREAMMGR_ADDR, else the daemon's default socket). */
  daemon?: string;
  /** Bearer token (default: $STREAMMGR_TOKEN). */
  token?: string;
  /** grpc-js credentials (default: insecure; a Unix socket or a --insecure-tcp daemon). */
  credentials?: ChannelCredentials;
  /** A Client of your own instead of the shared one for daemon + token. */
  client?: Client;
}

/** Attach tuning, and the Duplex's own options. */
export interface SocketOptions extends DaemonOptions {
  /** As net.Socket's: false (default) ends our side when the peer's EOF comes. */
  allowHalfOpen?: boolean;
  /** Inbound bytes the daemon may send unacknowledged (default 4 MiB; 1 to 64 MiB). */
  window?: number;
  /** Outbound bytes sent and not yet accepted by the daemon (default 2 MiB; at most window / 2). */
  writeWindow?: number;
  /** Largest data message sent (default 256 KiB; keep it below the daemon's --max-message-size). */
  maxMessageSize?: number;
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
  /** asyncio's reader limit for readLine/readUntil on this socket, and the daemon's (Open's limit). */
  limit?: number;
}

export interface TlsOptions {
  servername?: string;
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
  ALPNProtocols?: string[];
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface TcpConnectOptions extends SocketOptions {
  host?: string;
  port: number;
  localAddress?: string;
  localPort?: number;
  /** Open's connect_timeout, in ms. */
  connectTimeout?: number;
  /** net.Socket's idle timeout ('timeout' event), in ms. */
  timeout?: number;
  /** TLS made by the daemon (no half-close: end() only flushes). */
  tls?: boolean | TlsOptions;
}

export interface UnixConnectOptions extends SocketOptions {
  path: string;
  connectTimeout?: number;
  timeout?: number;
}

export type ConnectOptions = TcpConnectOptions | UnixConnectOptions;

export interface AddressInfo {
  address: string;
  family: string;
  port: number;
}

/** The daemon's ListStreams entry of a stream. */
export interface StreamInfo {
  stream_id: string;
  kind: string;
  peername: string;
  sockname: string;
  state: string;
  bytes_in: number;
  bytes_out: number;
  buffered: number;
  retained: number;
  earliest_offset: number;
  write_buffered: number;
  calls_in_progress: number;
  attached: boolean;
  relay_peer: string;
  server_id: string;
  owner: string;
  shared_with: string[];
  [key: string]: unknown;
}

export interface ReadOptions {
  /** asyncio's limit (default: the stream's `limit`, else 65536). */
  limit?: number;
}

/** A net.Socket-like Duplex over one daemon stream (the Attach RPC). */
export class Socket extends Duplex {
  constructor(options?: SocketOptions);
  connect(options: ConnectOptions, connectListener?: () => void): this;
  connect(port: number, host?: string, connectListener?: () => void): this;
  connect(path: string, connectListener?: () => void): this;

  /** The daemon's stream handle (null until Open answered). */
  readonly streamId: string | null;
  connecting: boolean;
  pending: boolean;
  readonly readyState: 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed';
  readonly bytesRead: number;
  readonly bytesWritten: number;
  remoteAddress?: string;
  remotePort?: number;
  remoteFamily?: string;
  localAddress?: string;
  localPort?: number;
  localFamily?: string;
  /** The daemon's peername / sockname strings ('host:port' or a Unix path). */
  peername?: string;
  sockname?: string;
  timeout?: number;

  address(): AddressInfo | {};
  setTimeout(ms: number, callback?: () => void): this;
  /** Accepted; no-op (the daemon's sockets have TCP_NODELAY on). */
  setNoDelay(noDelay?: boolean): this;
  /** Accepted; no-op (the daemon's sockets have keep-alive on). */
  setKeepAlive(enable?: boolean, initialDelay?: number): this;
  ref(): this;
  unref(): this;
  resetAndDestroy(): this;

  readLine(options?: ReadOptions): Promise<Buffer>;
  readExactly(n: number): Promise<Buffer>;
  readUntil(separator?: string | Buffer | Array<string | Buffer>, options?: ReadOptions): Promise<Buffer>;
  /** The daemon's ListStreams entry for this stream, or null. */
  stats(): Promise<StreamInfo | null>;

  on(event: 'connect' | 'ready' | 'end' | 'finish' | 'drain' | 'timeout', listener: () => void): this;
  on(event: 'data', listener: (data: Buffer) => void): this;
  on(event: 'error', listener: (err: StreammgrSocketError) => void): this;
  on(event: 'close', listener: (hadError: boolean) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'connect' | 'ready' | 'end' | 'finish' | 'drain' | 'timeout', listener: () => void): this;
  once(event: 'data', listener: (data: Buffer) => void): this;
  once(event: 'error', listener: (err: StreammgrSocketError) => void): this;
  once(event: 'close', listener: (hadError: boolean) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

export interface ServerOptions extends SocketOptions {
  pauseOnConnect?: boolean;
}

export interface ListenOptions {
  port?: number;
  host?: string;
  path?: string;
  backlog?: number;
  reusePort?: boolean;
}

/** A net.Server-like listener owned by the daemon (StartServer + Serve). */
export class Server extends EventEmitter {
  constructor(connectionListener?: (socket: Socket) => void);
  constructor(options?: ServerOptions, connectionListener?: (socket: Socket) => void);
  /** host defaults to 127.0.0.1 (the daemon's default policy refuses every interface). */
  listen(port?: number, host?: string, backlog?: number, listeningListener?: () => void): this;
  listen(port?: number, host?: string, listeningListener?: () => void): this;
  listen(port?: number, listeningListener?: () => void): this;
  listen(path: string, listeningListener?: () => void): this;
  listen(options: ListenOptions, listeningListener?: () => void): this;
  close(callback?: (err?: Error) => void, options?: { closeClients?: boolean; abortClients?: boolean }): this;
  address(): AddressInfo | string | null;
  getConnections(cb: (err: Error | null, count: number) => void): this;
  ref(): this;
  unref(): this;
  readonly listening: boolean;
  readonly serverId: string | null;
  /** Every bound address as the daemon reports it. */
  readonly sockets: string[];
  maxConnections?: number;

  on(event: 'listening' | 'close', listener: () => void): this;
  on(event: 'connection', listener: (socket: Socket) => void): this;
  on(event: 'error', listener: (err: StreammgrSocketError) => void): this;
  on(event: 'drop', listener: (data: { remoteAddress?: string; remotePort?: number }) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export interface ClientOptions {
  daemon?: string;
  token?: string;
  credentials?: ChannelCredentials;
  /** Long calls (Attach, Serve) per gRPC connection (default 128). */
  callsPerChannel?: number;
  channelOptions?: Record<string, unknown>;
}

/** A connection to streammgrd (a small pool of gRPC channels). */
export class Client {
  constructor(options?: ClientOptions);
  readonly address: string;
  /** One unary RPC of streammgr.v1.StreamService (proto field names); rejects with a Node-style error. */
  unary(method: string, request: object, options?: { timeoutMs?: number }): Promise<any>;
  listStreams(): Promise<{ streams: StreamInfo[]; buffered_bytes: number; max_buffered_bytes: number }>;
  listServers(): Promise<{ servers: any[]; buffered_bytes: number; max_buffered_bytes: number }>;
  close(): void;
}

/** An error as Node's net gives it, with the daemon's view of it. */
export interface StreammgrSocketError extends Error {
  /** 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOENT', 'EADDRINUSE', ..., or 'ERR_STREAMMGR_<REASON>'. */
  code: string;
  errno?: number;
  syscall?: string;
  address?: string;
  port?: number;
  /** The gRPC status code and its name. */
  grpcCode?: number;
  grpcStatus?: string;
  /** The google.rpc.ErrorInfo reason ('CONNECTION_RESET', ...), '' when none. */
  reason?: string;
  metadata?: Record<string, string>;
  details?: object[];
  daemonMessage?: string;
}

export function connect(options: ConnectOptions, connectListener?: () => void): Socket;
export function connect(port: number, host?: string, connectListener?: () => void): Socket;
export function connect(path: string, connectListener?: () => void): Socket;
export const createConnection: typeof connect;
export function createServer(connectionListener?: (socket: Socket) => void): Server;
export function createServer(options?: ServerOptions, connectionListener?: (socket: Socket) => void): Server;
/** A Socket on an existing daemon stream (resolves once attached). */
export function attach(streamId: string, options?: SocketOptions & { peername?: string; sockname?: string }): Promise<Socket>;
/** A connected pair made by the daemon (OpenPair). */
export function socketPair(options?: SocketOptions): Promise<[Socket, Socket]>;
/** The daemon's default address ($STREAMMGR_ADDR, $XDG_RUNTIME_DIR/streammgrd.sock, /tmp/streammgrd-$UID/streammgrd.sock). */
export function defaultAddress(env?: NodeJS.ProcessEnv): string;
export function findProtoDir(): string;
export function toNodeError(grpcError: unknown, context?: { syscall?: string; address?: string; port?: number; daemon?: string }): StreammgrSocketError;

/** asyncio's StreamReader methods over any Readable (paused mode; not with 'data' listeners). */
export function readLine(stream: Readable, options?: ReadOptions): Promise<Buffer>;
export function readExactly(stream: Readable, n: number): Promise<Buffer>;
export function readUntil(stream: Readable, separator?: string | Buffer | Array<string | Buffer>, options?: ReadOptions): Promise<Buffer>;
export function read(stream: Readable, n?: number): Promise<Buffer>;
export const DEFAULT_LIMIT: number;

/** EOF before the read could complete: partial holds the bytes read. */
export class IncompleteReadError extends Error {
  constructor(partial: Buffer, expected: number | null);
  readonly code: 'ERR_STREAMMGR_INCOMPLETE_READ';
  partial: Buffer;
  /** The count asked for; null for readUntil. */
  expected: number | null;
}

/** readUntil found no separator within the limit; the bytes stay in the stream. */
export class LimitOverrunError extends Error {
  constructor(message: string, consumed: number);
  readonly code: string;
  consumed: number;
}

/** readLine's line over the limit (asyncio's ValueError); the line was dropped. */
export class LineTooLongError extends LimitOverrunError {}
