package manager

import (
	"context"
	"errors"
	"io"
	"sync"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore"
)

// Attach windows: the most inbound bytes sent and not yet acknowledged.
const (
	DefaultAttachWindow = 4 << 20
	MaxAttachWindow     = 64 << 20
)

// attachChunk is the most inbound bytes one AttachResponse carries.
const attachChunk = 256 << 10

// writtenEvery is how often, in accepted outbound bytes, an Attach reports
// written without inbound data to carry it; it also reports on write_eof
// and when the client closes its side.
const writtenEvery = 256 << 10

// attachment is a live Attach call on a stream.
type attachment struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// attachedError is a read of a stream whose inbound bytes an Attach owns.
type attachedError struct{ id string }

func (e attachedError) Error() string {
	return "stream " + e.id + " is attached: its inbound bytes go to the Attach call"
}

// errAttachSuperseded ends an Attach that a newer Attach took over from.
var errAttachSuperseded = errors.New("a newer Attach call took over the stream")

// attach makes a the stream's attachment, ending the one before (and
// waiting until it is gone).
func (st *Stream) attach(ctx context.Context, a *attachment) error {
	for {
		old := st.attached.Load()
		if old != nil {
			old.cancel(errAttachSuperseded)
			select {
			case <-old.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if st.attached.CompareAndSwap(old, a) {
			return nil
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
	st, done, err := s.m.acquire(first.StreamId)
	if err != nil {
		return toStatus(err)
	}
	defer done()
	if err := st.relayBusy(); err != nil {
		return toStatus(err)
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	a := &attachment{cancel: cancel, done: make(chan struct{})}
	defer close(a.done)
	if err := st.attach(ctx, a); err != nil {
		return toStatus(err)
	}
	defer st.attached.CompareAndSwap(a, nil)

	start, err := st.R.Seek(ctx, from)
	if err != nil {
		return toStatus(err)
	}
	at := &attachCall{
		s: s, st: st, stream: stream, ctx: ctx, cancel: cancel,
		window: int64(window), sent: start, acked: start,
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
	stream smv1.StreamService_AttachServer
	ctx    context.Context
	cancel context.CancelCauseFunc
	window int64

	sendMu      sync.Mutex // one Send at a time
	mu          sync.Mutex // guards sent, acked and lastWritten
	sent        int64      // inbound offset after the bytes sent
	acked       int64      // inbound offset the client acknowledged
	lastWritten int64      // written as last reported

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
		data, next, err := st.R.ReadAhead(at.ctx, int(min(room, attachChunk)))
		if err == io.EOF {
			if err := at.send(&smv1.AttachResponse{Offset: next, Eof: true}); err != nil {
				return err
			}
			select {
			case <-at.clientDone:
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
	st := at.st
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
			at.cancel(toStatus(err))
			return
		}
		if _, high := st.W.WriteBufferLimits(); len(msg.Data) > 0 && st.W.BufferSize() > high {
			// Above the high-water mark: take no more messages until the
			// socket has taken the bytes, so flow control pushes back.
			if err := st.W.Drain(at.ctx); err != nil {
				if at.ctx.Err() == nil {
					at.cancel(toStatus(err))
				}
				return
			}
		}
		at.reportWritten(msg.WriteEof)
	}
}

// take applies one client message.
func (at *attachCall) take(msg *smv1.AttachRequest) error {
	st := at.st
	if msg.StreamId != "" || msg.Window != 0 {
		return invalid("stream_id", "stream_id and window belong in the first message only")
	}
	if msg.Ack != nil {
		if err := st.R.Ack(*msg.Ack); err != nil {
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
		if _, err := st.W.WriteAt(off, msg.Data); err != nil {
			return err
		}
	}
	if msg.WriteEof {
		if err := st.W.WriteEOF(); err != nil {
			return err
		}
	}
	return nil
}

// reportWritten sends written when it moved writtenEvery bytes since the
// last report, or, with final, when it moved at all. Only a final report
// waits for a response being sent: the receiving side must never wait on
// the client reading, or a client that waits for its sends to finish
// before reading would deadlock with us. A skipped report is made by the
// response being sent, or the next one.
func (at *attachCall) reportWritten(final bool) {
	w := at.st.W.Written()
	at.mu.Lock()
	due := w-at.lastWritten >= writtenEvery || (final && w != at.lastWritten)
	at.mu.Unlock()
	if !due {
		return
	}
	if final {
		at.sendMu.Lock()
	} else if !at.sendMu.TryLock() {
		return
	}
	resp := &smv1.AttachResponse{Offset: at.sentOffset(), Written: at.st.W.Written()}
	at.mu.Lock()
	at.lastWritten = resp.Written
	at.mu.Unlock()
	err := at.stream.Send(resp)
	at.sendMu.Unlock()
	if err != nil {
		at.cancel(err)
	}
}

func (at *attachCall) sentOffset() int64 {
	at.mu.Lock()
	defer at.mu.Unlock()
	return at.sent
}
