package manager

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore"
)

// Attach windows: the most inbound bytes sent and not yet acknowledged.
const (
	DefaultAttachWindow = 4 << 20
	MaxAttachWindow     = 64 << 20
)

// attachChunk is the most inbound bytes one AttachResponse carries (less
// when the daemon's max message size is smaller).
const attachChunk = 256 << 10

// writtenEvery is how often, in accepted outbound bytes, an Attach reports
// written without inbound data to carry it; it also reports on write_eof
// and when the client closes its side.
const writtenEvery = 256 << 10

// attachment is a live Attach call on a stream.
type attachment struct {
	cancel context.CancelCauseFunc
	mu     sync.RWMutex // read-held while the call reads, acknowledges or writes the stream
	gone   bool         // taken over or ended: the call touches the stream no more
}

// use runs f, which reads, acknowledges or writes the stream, unless the
// call no longer owns the stream (errAttachSuperseded).
func (a *attachment) use(f func() error) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.gone {
		return errAttachSuperseded
	}
	return f()
}

// release ends the call's use of the stream once the uses in progress are
// over (their waits end with the call's context).
func (a *attachment) release() {
	a.mu.Lock()
	a.gone = true
	a.mu.Unlock()
}

// attachedError is a read of a stream whose inbound bytes an Attach owns.
type attachedError struct{ id string }

func (e attachedError) Error() string {
	return "stream " + e.id + " is attached: its inbound bytes go to the Attach call"
}

// errAttachSuperseded ends an Attach that a newer Attach took over from.
var errAttachSuperseded = errors.New("a newer Attach call took over the stream")

// attach makes a the stream's attachment, ending the one before. That
// call touches the stream no more once attach returns, though it may not
// have ended yet: a response it is sending can wait on a client that
// stopped reading, and must not hold up the new call.
func (st *Stream) attach(a *attachment) {
	for {
		old := st.attached.Load()
		if old != nil {
			old.cancel(errAttachSuperseded)
			old.release()
		}
		if st.attached.CompareAndSwap(old, a) {
			return
		}
	}
}

// Attach implements StreamService.Attach.
func (s *Service) Attach(stream smv1.StreamService_AttachServer) error {
	first, err := stream.Recv()
	if err != nil {
		if err == io.EOF {
			return toStatus(invalid("stream_id", "the first message names the stream"))
		}
		return err
	}
	window := int(first.Window)
	switch {
	case first.Window < 0 || first.Window > MaxAttachWindow:
		return toStatus(invalid("window", "must be 0 (the default, 4 MiB) to 64 MiB"))
	case window == 0:
		window = DefaultAttachWindow
	}
	if len(first.Data) > 0 || first.WriteEof || first.Ack != nil {
		return toStatus(invalid("data", "the first message only names the stream, the offset and the window: send data, write_eof and ack after it"))
	}
	from, err := offsetOf("offset", first.Offset, streamcore.FromDelivered)
	if err != nil {
		return toStatus(err)
	}
	st, done, err := s.m.acquire(stream.Context(), first.StreamId)
	if err != nil {
		return toStatus(err)
	}
	defer done()
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	a := &attachment{cancel: cancel}
	st.claimMu.Lock()
	if err := st.relayBusy(); err != nil {
		st.claimMu.Unlock()
		return toStatus(err)
	}
	st.attach(a)
	st.claimMu.Unlock()
	defer a.release()
	defer st.attached.CompareAndSwap(a, nil)

	var start int64
	if err := a.use(func() (err error) { start, err = st.R.Seek(ctx, from); return err }); err != nil {
		if ctx.Err() != nil {
			return toStatus(context.Cause(ctx))
		}
		return toStatus(err)
	}
	at := &attachCall{
		s: s, st: st, a: a, stream: stream, ctx: ctx, cancel: cancel,
		window: int64(window), chunk: min(attachChunk, s.maxResult()), sent: start, acked: start,
		ackCh: make(chan struct{}, 1), clientDone: make(chan struct{}),
	}
	at.lastWritten = st.W.Written()
	if err := at.send(&smv1.AttachResponse{Offset: start}); err != nil {
		return err
	}
	go at.receive()
	return at.deliver()
}

// attachCall is the state of one Attach call: deliver sends inbound bytes
// (the call's goroutine), receive takes the client's messages.
type attachCall struct {
	s      *Service
	st     *Stream
	a      *attachment
	stream smv1.StreamService_AttachServer
	ctx    context.Context
	cancel context.CancelCauseFunc
	window int64
	chunk  int // the most bytes per response

	sendMu sync.Mutex // one Send at a time; guards respNext
	// reportPending asks the sender of the response in flight to report
	// written after it.
	reportPending atomic.Bool
	respNext      int64      // inbound offset after the data of the responses sent
	mu            sync.Mutex // guards sent, acked and lastWritten
	sent          int64      // inbound offset after the bytes sent
	acked         int64      // inbound offset the client acknowledged
	lastWritten   int64      // written as last reported

	ackCh      chan struct{} // an ack came (capacity 1)
	clientDone chan struct{} // closed when the client closed its side
}

// send sends one response, reporting written.
func (at *attachCall) send(resp *smv1.AttachResponse) error {
	at.sendMu.Lock()
	defer at.sendMu.Unlock()
	resp.Written = at.st.W.Written()
	at.mu.Lock()
	at.lastWritten = resp.Written
	at.mu.Unlock()
	at.respNext = resp.Offset + int64(len(resp.Data))
	if err := at.stream.Send(resp); err != nil {
		return err
	}
	// A report asked for while this response was being sent.
	for at.reportPending.Swap(false) {
		if err := at.sendReportLocked(); err != nil {
			return err
		}
	}
	return nil
}

// sendReportLocked sends where the stream stands (sendMu held).
func (at *attachCall) sendReportLocked() error {
	// Where the next data starts (respNext): a client takes every
	// response's offset for where it stands, and sent may count bytes
	// read for a response not sent yet.
	resp := &smv1.AttachResponse{Offset: at.respNext, Written: at.st.W.Written()}
	at.mu.Lock()
	at.lastWritten = resp.Written
	at.mu.Unlock()
	return at.stream.Send(resp)
}

// deliver sends the stream's inbound bytes within the window until EOF,
// then waits for the client to close its side.
func (at *attachCall) deliver() error {
	st := at.st
	for {
		at.mu.Lock()
		room := at.window - (at.sent - at.acked)
		at.mu.Unlock()
		if room <= 0 {
			select {
			case <-at.ackCh:
				continue
			case <-at.ctx.Done():
				return at.ended()
			}
		}
		var (
			data []byte
			next int64
		)
		err := at.a.use(func() (err error) {
			data, next, err = st.R.ReadAhead(at.ctx, int(min(room, int64(at.chunk))))
			return err
		})
		if err == io.EOF {
			if err := at.send(&smv1.AttachResponse{Offset: next, Eof: true}); err != nil {
				return err
			}
			select {
			case <-at.clientDone:
				return nil
			case <-st.W.Done():
				// Closed, aborted or lost: nothing more will come either
				// way; a connection error (a write the peer refused) is the
				// call's.
				if err := st.W.WaitClosed(at.ctx); err != nil {
					return toStatus(err)
				}
				return nil
			case <-at.ctx.Done():
				return at.ended()
			}
		}
		if err != nil {
			if at.ctx.Err() != nil {
				return at.ended()
			}
			return toStatus(&readError{err: err, next: next})
		}
		at.mu.Lock()
		at.sent = next
		at.mu.Unlock()
		if err := at.send(&smv1.AttachResponse{Data: data, Offset: next - int64(len(data))}); err != nil {
			return err
		}
	}
}

// ended is deliver's answer once the call's context ended: the error the
// receiving side ended it with, a newer Attach, or the client's going
// away.
func (at *attachCall) ended() error { return toStatus(context.Cause(at.ctx)) }

// receive takes the client's messages: acks, data and write_eof.
func (at *attachCall) receive() {
	for {
		msg, err := at.stream.Recv()
		if err == io.EOF {
			at.reportWritten(true)
			close(at.clientDone)
			return
		}
		if err != nil {
			at.cancel(err)
			return
		}
		if err := at.take(msg); err != nil {
			// (A call that has ended already keeps its first cause.)
			at.cancel(toStatus(err))
			return
		}
		// An empty message asks where the stream stands: a report
		// whenever written moved.
		empty := len(msg.Data) == 0 && msg.Ack == nil && !msg.WriteEof && msg.Offset == nil
		at.report(msg.WriteEof, empty)
	}
}

// take applies one client message.
func (at *attachCall) take(msg *smv1.AttachRequest) error {
	st := at.st
	if msg.StreamId != "" || msg.Window != 0 {
		return invalid("stream_id", "stream_id and window belong in the first message only")
	}
	if msg.Ack != nil {
		if err := at.a.use(func() error { return st.R.Ack(*msg.Ack) }); err != nil {
			if err == errAttachSuperseded {
				return err
			}
			return &fieldError{field: "ack", desc: err.Error()}
		}
		at.mu.Lock()
		at.acked = max(at.acked, *msg.Ack)
		at.mu.Unlock()
		select {
		case at.ackCh <- struct{}{}:
		default:
		}
	}
	if len(msg.Data) > 0 || msg.Offset != nil {
		off, err := offsetOf("offset", msg.Offset, -1)
		if err != nil {
			return err
		}
		if err := at.write(off, msg.Data); err != nil {
			return err
		}
	}
	if msg.WriteEof {
		if err := at.a.use(st.W.WriteEOF); err != nil {
			return err
		}
	}
	return nil
}

// write writes data at outbound offset off (-1: appended) in parts that
// the write buffer can always take once it is at or below its high-water
// mark, and above the mark takes no more until the socket has taken the
// bytes (Drain), so flow control pushes back: a message larger than the
// room left waits instead of failing with WRITE_BUFFER_FULL.
func (at *attachCall) write(off int64, data []byte) error {
	st := at.st
	for {
		_, high := st.W.WriteBufferLimits()
		part := len(data)
		if room := at.s.m.cfg.MaxWriteBuffer - high; room > 0 {
			part = min(part, room)
		}
		err := at.a.use(func() error { _, err := st.W.WriteAt(off, data[:part]); return err })
		if full := (*streamcore.WriteBufferFullError)(nil); errors.As(err, &full) && st.W.BufferSize() > high {
			// Write calls filled the buffer meanwhile: wait for room. (A
			// refused write accepted nothing.)
			if err := st.W.Drain(at.ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		data = data[part:]
		if off >= 0 {
			off += int64(part)
		}
		if st.W.BufferSize() > high {
			if err := st.W.Drain(at.ctx); err != nil {
				return err
			}
		}
		if len(data) == 0 {
			return nil
		}
	}
}

// reportWritten sends written when it moved writtenEvery bytes since the
// last report, or, with final, when it moved at all. Only a final report
// waits for a response being sent: the receiving side must never wait on
// the client reading, or a client that waits for its sends to finish
// before reading would deadlock with us. A skipped report is made by the
// response being sent, or the next one.
func (at *attachCall) reportWritten(final bool) { at.report(final, false) }

// report is reportWritten; asked (an empty client message) reports any
// move without waiting, as the periodic report.
func (at *attachCall) report(final, asked bool) {
	w := at.st.W.Written()
	at.mu.Lock()
	due := w-at.lastWritten >= writtenEvery || ((final || asked) && w != at.lastWritten)
	at.mu.Unlock()
	if !due {
		return
	}
	if final {
		at.sendMu.Lock()
	} else if !at.sendMu.TryLock() {
		// The response being sent makes the report after it; if it was
		// done meanwhile, the lock is free now.
		at.reportPending.Store(true)
		if !at.sendMu.TryLock() {
			return
		}
		at.reportPending.Store(false)
	}
	err := at.sendReportLocked()
	at.sendMu.Unlock()
	if err != nil {
		at.cancel(err)
	}
}
