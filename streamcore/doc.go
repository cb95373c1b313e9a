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
package streamcore
