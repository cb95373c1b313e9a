// Package streamcore implements Python asyncio Streams over net.Conn: a
// StreamReader with asyncio's buffer limit, flow control and error semantics,
// a StreamWriter with write buffering, drain water marks and half-close, and
// servers that hand each accepted connection to a handler.
//
// The behaviour follows CPython 3.13's asyncio/streams.py, quirks included:
// read(n) returns as soon as any byte is buffered, readuntil leaves the buffer
// intact on LimitOverrunError, readline drops an over-long line, an error
// received from the connection is sticky and hides buffered bytes, a peer FIN
// leaves the stream half-open, and a context cancelled while a read waits
// consumes nothing.
//
// Documented deviations, made because a daemon owns these streams on behalf
// of remote clients:
//
//   - Write refuses data after Close or WriteEOF with an error instead of
//     silently dropping it, so no caller loses bytes without being told.
//   - The writer has a hard cap on unsent bytes (Options.MaxWriteBuffer);
//     a write beyond it fails with a *WriteBufferFullError and accepts
//     nothing.
//   - A cancelled read(-1) keeps every byte (CPython drops the blocks it had
//     already pulled from the buffer).
//   - Limit <= 0 is rejected for servers too, not only for connections.
//
// A daemon serving many callers also bounds what their streams take, with
// two additions asyncio does not have, each shared between streams:
//
//   - Options.Budget, a memory budget (Budget) for the bytes streams
//     buffer; budgets nest (Budget.Child: one per caller inside the
//     daemon's), and a stream's reading pauses while its budget or an
//     ancestor has no room, resuming when the one that refused has room
//     again. A write with no room fails with *BudgetError.
//   - Options.InRate and Options.OutRate, bandwidth limits (a
//     *rate.Limiter of bytes per second from golang.org/x/time/rate).
//     They slow reading and writing down and never fail them: the
//     stream's goroutines wait between socket reads or writes (no
//     goroutine of their own). Whatever stops reading (Close, Abort, the
//     connection's loss, StartTLS, Relay) ends a read's wait at once;
//     Abort and the connection's loss end a write's, while Close flushes
//     at the limit. Under OutRate, Write still accepts up to
//     MaxWriteBuffer and Drain waits, as with a slow peer. A Relay keeps
//     to the limits of both streams.
//
// # Goroutines and memory
//
// With SetIdlePoller(true) (the daemon's --idle-poller; off by default),
// an idle stream over a plain TCP or Unix socket holds no goroutine. Its
// read goroutine reads until the socket has nothing more, then leaves the
// socket to the package's poller (on Linux one epoll instance and one
// goroutine for the whole process, PollerGoroutine) and exits; the poller
// starts a new read goroutine when the socket is readable, or has a FIN or
// an error pending, which the read then reports exactly as before. A
// stream that is busy (its socket had data, or a read waited, within the
// last second) keeps its read goroutine waiting in the Go runtime's
// netpoller instead, which wakes it one goroutine hop sooner than the
// poller would, and a read that waits on an idle stream takes its socket
// out of the poller at once: the poller costs the data path nothing
// measurable (TestPollerEchoAB). Off, every stream waits in the runtime's
// netpoller. A read
// buffer is taken from a pool only while there are bytes to read. The write
// goroutine runs only while unsent bytes, a pending WriteEOF or a Close's
// flush remain: a write the socket takes at once is done inline. Streams
// keep a read goroutine while they wait with work to do: paused above
// 2*Limit or by the memory budget, or waiting for their bandwidth limit.
//
// TLS streams keep a read goroutine for their whole life (a crypto/tls
// read cannot be split at readiness: a record may arrive in pieces), and
// with it a 16 KiB read buffer while idle: about 4 KiB of goroutine stack
// plus the buffer per idle TLS stream, on top of what a plain one costs.
// Connections that are not sockets (net.Pipe, wrapped conns) keep a read
// goroutine too.
package streamcore
