package main_test

// Session from a shell: grpcurl -d @ reads one JSON request per line from
// stdin and prints each answer as a JSON object, so a script can drive a
// whole conversation on one call.

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// sessionStatus is an error answer of a Session call (streammgr.v1.Status).
type sessionStatus struct {
	Code    int              `json:"code"`
	Message string           `json:"message"`
	Details []map[string]any `json:"details"`
}

// reason is the google.rpc.ErrorInfo reason ("" when absent).
func (s *sessionStatus) reason() string {
	e := rpcError{Details: s.Details}
	return e.reason()
}

// sessionAnswer is one SessionResponse as grpcurl prints it; unknown fields
// are refused, so the shapes are checked too.
type sessionAnswer struct {
	CallID      int64            `json:"callId,string"`
	Open        *openResp        `json:"open"`
	Write       *writeResp       `json:"write"`
	Read        *readResp        `json:"read"`
	ReadLine    *readResp        `json:"readLine"`
	ReadExactly *readExactlyResp `json:"readExactly"`
	WriteEof    *empty           `json:"writeEof"`
	IsClosing   *isClosingResp   `json:"isClosing"`
	Close       *empty           `json:"close"`
	Cancel      *struct {
		Cancelled bool `json:"cancelled"`
	} `json:"cancel"`
	Error *sessionStatus `json:"error"`
}

// shellSession is a grpcurl Session call fed through a pipe, as a shell
// script feeds it.
type shellSession struct {
	*bgCall
	stdin io.WriteCloser
}

func startShellSession(t *testing.T, tg target) *shellSession {
	t.Helper()
	b, stdin := startBackground(t, tg, "Session", nil)
	return &shellSession{bgCall: b, stdin: stdin}
}

func (s *shellSession) send(t *testing.T, req m) {
	t.Helper()
	if _, err := s.stdin.Write(append(requestJSON(req), '\n')); err != nil {
		t.Fatalf("writing to grpcurl's stdin: %v", err)
	}
}

// next returns the next answer grpcurl printed.
func (s *shellSession) next(t *testing.T) sessionAnswer {
	t.Helper()
	select {
	case raw, ok := <-s.msgs:
		if !ok {
			<-s.done
			t.Fatalf("grpcurl ended before the next answer:\n%s", s.res)
		}
		var a sessionAnswer
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("decoding the answer %s: %v", raw, err)
		}
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("no answer within 20s")
	}
	return sessionAnswer{}
}

// nextN returns the next n answers by call_id (for calls whose answers
// may come in either order).
func (s *shellSession) nextN(t *testing.T, n int) map[int64]sessionAnswer {
	t.Helper()
	out := map[int64]sessionAnswer{}
	for range n {
		a := s.next(t)
		out[a.CallID] = a
	}
	return out
}

// end closes stdin (grpcurl half-closes the call) and waits for grpcurl to
// exit.
func (s *shellSession) end(t *testing.T) result {
	t.Helper()
	s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("grpcurl still running 20s after its stdin closed")
	}
	for raw := range s.msgs {
		t.Errorf("an answer after the last one: %s", raw)
	}
	return s.res
}

// wantSessionError checks an error answer against the error the unary
// call gave (grpcurl's rendering of both).
func wantSessionError(t *testing.T, a sessionAnswer, id int64, unary *rpcError, code codes.Code, reason string) {
	t.Helper()
	if a.CallID != id || a.Error == nil {
		t.Fatalf("answer %+v, want an error for call %d", a, id)
	}
	if a.Error.Code != int(code) || a.Error.reason() != reason {
		t.Fatalf("call %d: error %+v, want code %d (%v) reason %s", id, a.Error, code, code, reason)
	}
	if info := (&rpcError{Details: a.Error.Details}).detail("google.rpc.ErrorInfo"); info["domain"] != "streammgr" {
		t.Fatalf("call %d: ErrorInfo %v, want domain streammgr", id, info)
	}
	if unary == nil {
		return
	}
	if a.Error.Message != unary.Message || !reflect.DeepEqual(a.Error.Details, unary.Details) {
		t.Fatalf("call %d: session error %q %v\nunary error %q %v", id, a.Error.Message, a.Error.Details, unary.Message, unary.Details)
	}
}

func TestSessionE2E(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false)
	tg := d.unix()
	p := newPeer(t)
	s := startShellSession(t, tg)

	s.send(t, m{"call_id": 1, "open": m{"tcp": m{"host": "127.0.0.1", "port": p.port()}}})
	a := s.next(t)
	if a.CallID != 1 || a.Open == nil || !strings.HasPrefix(a.Open.StreamID, "s-") {
		t.Fatalf("open answered %+v", a)
	}
	id := a.Open.StreamID
	c := p.accept(t)
	if a.Open.Sockname != c.RemoteAddr().String() {
		t.Fatalf("open sockname %q, the peer sees %q", a.Open.Sockname, c.RemoteAddr())
	}

	s.send(t, m{"call_id": 2, "write": m{"stream_id": id, "data": []byte("hello\n")}})
	if a := s.next(t); a.CallID != 2 || a.Write == nil || a.Write.NextOffset != 6 {
		t.Fatalf("write answered %+v", a)
	}
	readPeer(t, c, "hello\n")

	// A read that waits does not hold up a write sent after it.
	s.send(t, m{"call_id": 3, "read_line": m{"stream_id": id}})
	s.send(t, m{"call_id": 4, "write": m{"stream_id": id, "data": []byte("more")}})
	if a := s.next(t); a.CallID != 4 || a.Write == nil || a.Write.NextOffset != 10 {
		t.Fatalf("the write behind a waiting read answered %+v", a)
	}
	readPeer(t, c, "more")
	writePeer(t, c, "world\n")
	if a := s.next(t); a.CallID != 3 || a.ReadLine == nil || string(a.ReadLine.Data) != "world\n" || a.ReadLine.NextOffset != 6 {
		t.Fatalf("read_line answered %+v", a)
	}

	// Errors are the unary calls' errors.
	s.send(t, m{"call_id": 5, "read_exactly": m{"stream_id": id, "n": -1}})
	unary := fail(t, tg, "ReadExactly", m{"streamId": id, "n": -1}, codes.InvalidArgument, "INVALID_ARGUMENT")
	a = s.next(t)
	wantSessionError(t, a, 5, unary, codes.InvalidArgument, "INVALID_ARGUMENT")
	if fv := (&rpcError{Details: a.Error.Details}).fieldViolations(); !reflect.DeepEqual(fv, []string{"n"}) {
		t.Fatalf("BadRequest fields %v, want [n]", fv)
	}
	s.send(t, m{"call_id": 6, "read": m{"stream_id": "s-nope"}})
	unary = fail(t, tg, "Read", m{"streamId": "s-nope"}, codes.NotFound, "STREAM_NOT_FOUND")
	wantSessionError(t, s.next(t), 6, unary, codes.NotFound, "STREAM_NOT_FOUND")

	// Cancel a waiting read; a read with a timeout.
	s.send(t, m{"call_id": 7, "read": m{"stream_id": id, "n": 10}})
	eventually(t, 10*time.Second, "the read to wait", func() bool {
		st, ok := streamByID(t, tg, id)
		return ok && st.Calls == 1
	})
	s.send(t, m{"call_id": 8, "cancel": m{"call_id": 7}})
	both := s.nextN(t, 2)
	if a := both[8]; a.Cancel == nil || !a.Cancel.Cancelled {
		t.Fatalf("cancel answered %+v, want cancelled", a)
	}
	wantSessionError(t, both[7], 7, nil, codes.Canceled, "CANCELLED")
	s.send(t, m{"call_id": 9, "read": m{"stream_id": id, "n": 10}, "timeout": "0.05s"})
	wantSessionError(t, s.next(t), 9, nil, codes.DeadlineExceeded, "DEADLINE_EXCEEDED")
	writePeer(t, c, "kept")
	s.send(t, m{"call_id": 10, "read_exactly": m{"stream_id": id, "n": 4}})
	if a := s.next(t); a.CallID != 10 || a.ReadExactly == nil || string(a.ReadExactly.Data) != "kept" || a.ReadExactly.NextOffset != 10 {
		t.Fatalf("read after the cancelled and expired ones answered %+v, want kept", a)
	}

	s.send(t, m{"call_id": 11, "write_eof": m{"stream_id": id}})
	if a := s.next(t); a.CallID != 11 || a.WriteEof == nil {
		t.Fatalf("write_eof answered %+v", a)
	}
	expectPeerEOF(t, c)
	s.send(t, m{"call_id": 12, "is_closing": m{"stream_id": id}})
	if a := s.next(t); a.CallID != 12 || a.IsClosing == nil || a.IsClosing.IsClosing {
		t.Fatalf("is_closing after write_eof answered %+v, want false", a)
	}
	s.send(t, m{"call_id": 13, "close": m{"stream_id": id}})
	if a := s.next(t); a.CallID != 13 || a.Close == nil {
		t.Fatalf("close answered %+v", a)
	}
	if r := s.end(t); r.code != 0 {
		t.Fatalf("grpcurl Session after stdin closed: want success, got:\n%s", r)
	}
	if st, ok := streamByID(t, tg, id); ok && st.State != "closed" {
		t.Fatalf("stream state %q after close, want closed", st.State)
	}
}
