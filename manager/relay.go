package manager

import (
	"context"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore"
)

// relayRun is a Relay between two streams; both point at it while it runs.
type relayRun struct {
	first, second *Stream
	done          chan struct{} // closed when the relay has ended
	firstToSecond int64
	secondToFirst int64
	err           error
}

// peerOf returns the other stream of the relay.
func (r *relayRun) peerOf(st *Stream) *Stream {
	if r.first == st {
		return r.second
	}
	return r.first
}

// relayedError is an operation on a stream a Relay owns.
type relayedError struct{ id, peer string }

func (e relayedError) Error() string {
	return "stream " + e.id + " is relayed to stream " + e.peer + ": Close or Abort one of them to end the relay"
}

// relayBusy reports an operation the stream's relay forbids.
func (st *Stream) relayBusy() error {
	if r := st.relay.Load(); r != nil {
		return relayedError{id: st.ID, peer: r.peerOf(st).ID}
	}
	return nil
}

// readable reports why the stream cannot be read now, if it cannot.
func (st *Stream) readable() error {
	if err := st.relayBusy(); err != nil {
		return err
	}
	if st.attached.Load() != nil {
		return attachedError{id: st.ID}
	}
	return nil
}

// Relay implements StreamService.Relay.
func (s *Service) Relay(ctx context.Context, req *smv1.RelayRequest) (*smv1.RelayResponse, error) {
	if req.FirstStreamId == req.SecondStreamId && req.FirstStreamId != "" {
		return nil, toStatus(invalid("second_stream_id", "a stream cannot be relayed to itself"))
	}
	a, doneA, err := s.m.acquire(ctx, req.FirstStreamId)
	if err != nil {
		return nil, toStatus(err)
	}
	b, doneB, err := s.m.acquire(ctx, req.SecondStreamId)
	if err != nil {
		doneA()
		return nil, toStatus(err)
	}
	r := &relayRun{first: a, second: b, done: make(chan struct{})}
	if err := claimRelay(r); err != nil {
		doneA()
		doneB()
		return nil, toStatus(err)
	}
	// The relay runs on its own: the caller may go away; the streams stay
	// in use (never reaped as idle) until it ends.
	go func() {
		defer doneA()
		defer doneB()
		r.firstToSecond, r.secondToFirst, r.err = streamcore.Relay(a.W, b.W)
		a.relay.CompareAndSwap(r, nil)
		b.relay.CompareAndSwap(r, nil)
		close(r.done)
	}()
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
	if r.err != nil {
		return nil, toStatus(r.err)
	}
	return &smv1.RelayResponse{FirstToSecond: r.firstToSecond, SecondToFirst: r.secondToFirst}, nil
}

// claimRelay marks both streams as r's, unless one is relayed or attached.
func claimRelay(r *relayRun) error {
	// Both claim locks, in a fixed order, so that an Attach cannot slip in
	// between the checks and the claims.
	a, b := r.first, r.second
	if b.ID < a.ID {
		a, b = b, a
	}
	a.claimMu.Lock()
	defer a.claimMu.Unlock()
	b.claimMu.Lock()
	defer b.claimMu.Unlock()
	for _, st := range []*Stream{r.first, r.second} {
		if st.attached.Load() != nil {
			return attachedError{id: st.ID}
		}
	}
	if !r.first.relay.CompareAndSwap(nil, r) {
		return r.first.relayBusy()
	}
	if !r.second.relay.CompareAndSwap(nil, r) {
		r.first.relay.CompareAndSwap(r, nil)
		return r.second.relayBusy()
	}
	return nil
}
