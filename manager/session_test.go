package manager

// Tests of Session, the per-stream API pipelined on one bidirectional
// stream, against real sockets: every operation answers exactly what its
// unary call answers, operations on one handle keep their order while
// handles (and a stream's reads and writes) never wait for each other,
// cancel and timeout end calls without consuming bytes, offsets carry a
// transfer across broken sessions, a session with MaxSessionCalls in flight
// stops being read, and a session that ends leaves nothing running.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// sessionClient drives one Session call. Requests go out as the test sends
// them; a receiver goroutine hands each response to the call waiting for
// its call_id and records the order responses arrived in.
type sessionClient struct {
	stream smv1.StreamService_SessionClient
	cancel context.CancelFunc
	done   chan struct{} // closed when Recv failed; err is its error
	err    error

	sendMu sync.Mutex

	mu      sync.Mutex
	nextID  int64
	waiters map[int64]chan *smv1.SessionResponse
	order   []int64                 // call_ids in the order their responses arrived
	stray   []*smv1.SessionResponse // responses no call was waiting for
}

// newSession opens a Session on c. It is cancelled when the test ends, and
// a response to no call fails the test then.
func newSession(t *testing.T, c smv1.StreamServiceClient) *sessionClient {
	t.Helper()
	ctx, cancel := context.WithCancel(bg(t))
	stream, err := c.Session(ctx)
	if err != nil {
		cancel()
		t.Fatalf("Session: %v", err)
	}
	s := &sessionClient{stream: stream, cancel: cancel, done: make(chan struct{}), waiters: make(map[int64]chan *smv1.SessionResponse)}
	go s.receive()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(failAfter):
			t.Errorf("the session's receiver still runs %v after the session was cancelled", failAfter)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.stray {
			t.Errorf("a response to no call: %v", r)
		}
	})
	return s
}

func (s *sessionClient) receive() {
	defer close(s.done)
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			s.err = err
			return
		}
		s.mu.Lock()
		s.order = append(s.order, resp.CallId)
		select {
		case s.waiters[resp.CallId] <- resp:
		default: // nil: nobody asked; full: more answers than expected
			s.stray = append(s.stray, resp)
		}
		s.mu.Unlock()
	}
}

// pending is a call sent on a session.
type pending struct {
	id int64
	ch chan *smv1.SessionResponse
	s  *sessionClient
}

// start sends req (with a fresh call_id unless it has one) without waiting
// for the answer.
func (s *sessionClient) start(t *testing.T, req *smv1.SessionRequest) *pending {
	t.Helper()
	s.mu.Lock()
	if req.CallId == 0 {
		s.nextID++
		req.CallId = s.nextID
	}
	ch := s.waiters[req.CallId]
	if ch == nil {
		ch = make(chan *smv1.SessionResponse, 8)
		s.waiters[req.CallId] = ch
	}
	s.mu.Unlock()
	s.sendMu.Lock()
	err := s.stream.Send(req)
	s.sendMu.Unlock()
	if err != nil {
		t.Fatalf("Session send of call %d: %v", req.CallId, err)
	}
	return &pending{id: req.CallId, ch: ch, s: s}
}

// do sends the operation m and waits for its answer.
func (s *sessionClient) do(t *testing.T, m proto.Message) *smv1.SessionResponse {
	t.Helper()
	return s.start(t, sreq(m)).wait(t)
}

// arrival is the position of call id's first answer among the answers the
// session received, or -1.
func (s *sessionClient) arrival(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, got := range s.order {
		if got == id {
			return i
		}
	}
	return -1
}

// end half-closes the session and returns how it ended.
func (s *sessionClient) end(t *testing.T) error {
	t.Helper()
	s.sendMu.Lock()
	err := s.stream.CloseSend()
	s.sendMu.Unlock()
	if err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	return s.wait(t)
}

// wait waits until the session has ended and returns Recv's error (io.EOF:
// the daemon ended it with OK).
func (s *sessionClient) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(failAfter):
		t.Fatalf("the session has not ended within %v", failAfter)
		return nil
	}
}

func (p *pending) wait(t *testing.T) *smv1.SessionResponse {
	t.Helper()
	select {
	case r := <-p.ch:
		return r
	case <-p.s.done:
		select {
		case r := <-p.ch:
			return r
		default:
		}
		t.Fatalf("the session ended (%v) before answering call %d", p.s.err, p.id)
	case <-time.After(failAfter):
		t.Fatalf("call %d: no answer within %v", p.id, failAfter)
	}
	return nil
}

// notYet fails the test if the call has been answered.
func (p *pending) notYet(t *testing.T, what string) {
	t.Helper()
	select {
	case r := <-p.ch:
		t.Fatalf("%s: call %d was answered: %v", what, p.id, r)
	default:
	}
}

// sreq wraps a unary request message in the SessionRequest field of its
// type.
func sreq(m proto.Message) *smv1.SessionRequest {
	req := &smv1.SessionRequest{}
	rm := req.ProtoReflect()
	fields := rm.Descriptor().Oneofs().ByName("op").Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.Message().FullName() == m.ProtoReflect().Descriptor().FullName() {
			rm.Set(fd, protoreflect.ValueOfMessage(m.ProtoReflect()))
			return req
		}
	}
	panic(fmt.Sprintf("no SessionRequest operation takes a %T", m))
}

func withTimeout(req *smv1.SessionRequest, d time.Duration) *smv1.SessionRequest {
	req.Timeout = durationpb.New(d)
	return req
}

func cancelReq(id int64) *smv1.SessionRequest {
	return &smv1.SessionRequest{Op: &smv1.SessionRequest_Cancel{Cancel: &smv1.CancelCallRequest{CallId: id}}}
}

// opName is the name of the request's operation ("" for none).
func opName(req *smv1.SessionRequest) string {
	rm := req.ProtoReflect()
	if fd := rm.WhichOneof(rm.Descriptor().Oneofs().ByName("op")); fd != nil {
		return string(fd.Name())
	}
	return ""
}

// unary runs the operation of req as the unary RPC of the same name and
// returns its answer in a SessionResponse: the response in the field of the
// same name, or the status the client received.
func unary(ctx context.Context, c smv1.StreamServiceClient, req *smv1.SessionRequest) *smv1.SessionResponse {
	rm := req.ProtoReflect()
	fd := rm.WhichOneof(rm.Descriptor().Oneofs().ByName("op"))
	var method string
	for _, w := range strings.Split(string(fd.Name()), "_") {
		method += strings.ToUpper(w[:1]) + w[1:]
	}
	out := reflect.ValueOf(c).MethodByName(method).Call([]reflect.Value{
		reflect.ValueOf(ctx), reflect.ValueOf(rm.Get(fd).Message().Interface()),
	})
	if err, _ := out[1].Interface().(error); err != nil {
		return errorAnswer(status.Convert(err))
	}
	resp := &smv1.SessionResponse{}
	rfd := resp.ProtoReflect().Descriptor().Fields().ByName(fd.Name())
	resp.ProtoReflect().Set(rfd, protoreflect.ValueOfMessage(out[0].Interface().(proto.Message).ProtoReflect()))
	return resp
}

// errorAnswer is st as the error answer of a session call.
func errorAnswer(st *status.Status) *smv1.SessionResponse {
	p := st.Proto()
	return &smv1.SessionResponse{Result: &smv1.SessionResponse_Error{Error: &smv1.Status{Code: p.Code, Message: p.Message, Details: p.Details}}}
}

// answerErr is the error an answer carries as a gRPC status error (nil for
// a result).
func answerErr(r *smv1.SessionResponse) error {
	e := r.GetError()
	if e == nil {
		return nil
	}
	return status.FromProto(&spb.Status{Code: e.Code, Message: e.Message, Details: e.Details}).Err()
}

// wantAnswerStatus asserts that r is an error with code and reason.
func wantAnswerStatus(t *testing.T, r *smv1.SessionResponse, code codes.Code, reason string) *status.Status {
	t.Helper()
	if r.GetError() == nil {
		t.Fatalf("call %d answered %v, want %v %s", r.CallId, r, code, reason)
	}
	return wantStatus(t, answerErr(r), code, reason)
}

// wantOK asserts that r is not an error.
func wantOK(t *testing.T, r *smv1.SessionResponse) *smv1.SessionResponse {
	t.Helper()
	if r.Result == nil || r.GetError() != nil {
		t.Fatalf("call %d answered %v, want a result", r.CallId, r)
	}
	return r
}

// sameAnswer asserts that two answers are equal apart from call_id, with
// error details compared as the messages they hold.
func sameAnswer(t *testing.T, got, want *smv1.SessionResponse) {
	t.Helper()
	g, w := proto.Clone(got).(*smv1.SessionResponse), proto.Clone(want).(*smv1.SessionResponse)
	g.CallId, w.CallId = 0, 0
	gd, wd := unpackDetails(t, g), unpackDetails(t, w)
	if !proto.Equal(g, w) {
		t.Fatalf("session answered\n\t%v\nunary answered\n\t%v", prototext.Format(g), prototext.Format(w))
	}
	if len(gd) != len(wd) {
		t.Fatalf("session error details %v, unary %v", gd, wd)
	}
	for i := range gd {
		if !proto.Equal(gd[i], wd[i]) {
			t.Fatalf("session error detail %d is %v, unary %v", i, gd[i], wd[i])
		}
	}
}

// unpackDetails removes an error answer's details and returns them
// unpacked.
func unpackDetails(t *testing.T, r *smv1.SessionResponse) []proto.Message {
	t.Helper()
	e := r.GetError()
	if e == nil {
		return nil
	}
	var out []proto.Message
	for _, a := range e.Details {
		m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			t.Fatalf("error detail %s: %v", a.TypeUrl, err)
		}
		out = append(out, m)
	}
	e.Details = nil
	return out
}

// Parity: every operation answers what its unary call answers.

// parityFixture is what the two sides of a parity case share: listeners
// their streams connect to, so that peer names match.
type parityFixture struct {
	e        *env
	ln       net.Listener
	unixPath string
}

// side is one of the two equivalent handles of a parity case: the unary
// call runs on one, the session call on the other.
type side struct {
	id    string   // the handle the operation names
	id2   string   // a second handle, for relay
	peer  net.Conn // the stream's remote end, if any
	local string   // the stream's local address, as error messages name it
	fx    *parityFixture
	after func(t *testing.T) // runs after the operation
}

func (fx *parityFixture) tcp(t *testing.T, limit *int64) side {
	t.Helper()
	accepted := acceptOne(t, fx.ln)
	resp, err := fx.e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(fx.ln.Addr())}}, Limit: limit})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return side{id: resp.StreamId, peer: peerOf(t, accepted), local: resp.Sockname}
}

// tcpWith opens a stream whose peer has sent data (all of it buffered by
// the daemon) and, with fin, then EOF.
func (fx *parityFixture) tcpWith(t *testing.T, limit *int64, data string, fin bool) side {
	t.Helper()
	s := fx.tcp(t, limit)
	peerWrite(t, s.peer, data)
	if fin {
		s.peer.(*net.TCPConn).CloseWrite()
	}
	fx.e.waitBuffered(t, s.id, len(data))
	if fin && data == "" {
		waitFor(t, "EOF", fx.e.stream(t, s.id).R.AtEOF)
	}
	return s
}

func (fx *parityFixture) server(t *testing.T, deferred bool) side {
	t.Helper()
	srv := fx.e.startServer(t, func(r *smv1.StartServerRequest) {
		if deferred {
			r.StartServing = new(bool)
		}
	})
	return side{id: srv.ServerId}
}

type parityCase struct {
	name   string
	code   codes.Code // of the answer; OK: a result
	reason string
	prep   func(t *testing.T, fx *parityFixture) side
	op     func(s side) proto.Message
	check  func(t *testing.T, r *smv1.SessionResponse) // more checks of the session's answer
}

const unknownID = "s-0123456789abcdef"

// cleanupCall runs a call in a cleanup, where the test's context has ended.
func cleanupCall(t *testing.T, what string, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	if err := call(ctx); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func TestSessionParity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	sess := newSession(t, e.c)
	p := pki(t)

	fresh := func(t *testing.T, fx *parityFixture) side { return fx.tcp(t, nil) }
	none := func(t *testing.T, fx *parityFixture) side { return side{} }
	with := func(data string, fin bool) func(*testing.T, *parityFixture) side {
		return func(t *testing.T, fx *parityFixture) side { return fx.tcpWith(t, nil, data, fin) }
	}
	limited := func(data string) func(*testing.T, *parityFixture) side {
		return func(t *testing.T, fx *parityFixture) side { return fx.tcpWith(t, i64(8), data, false) }
	}
	// acked: 8 bytes buffered, then reads at offsets 0 and 4: the first
	// four are acknowledged and gone.
	acked := func(t *testing.T, fx *parityFixture) side {
		s := fx.tcpWith(t, nil, "abcdefgh", false)
		for _, off := range []int64{0, 4} {
			if _, err := fx.e.c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: s.id, N: 4, Offset: i64(off)}); err != nil {
				t.Fatalf("ReadExactly at %d: %v", off, err)
			}
		}
		return s
	}
	// readOnce: 8 bytes buffered, 4 read at offset 0 (kept for replay).
	readOnce := func(t *testing.T, fx *parityFixture) side {
		s := fx.tcpWith(t, nil, "abcdefgh", false)
		if _, err := fx.e.c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: s.id, N: 4, Offset: i64(0)}); err != nil {
			t.Fatalf("ReadExactly: %v", err)
		}
		return s
	}
	// reading: a unary read waits on the stream until the test ends.
	reading := func(t *testing.T, fx *parityFixture) side {
		s := fx.tcp(t, nil)
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			_, _ = fx.e.c.Read(bg(t), &smv1.ReadRequest{StreamId: s.id, N: i64(10)})
		}()
		waitFor(t, "the unary read to wait", fx.e.stream(t, s.id).R.Waiting)
		t.Cleanup(func() {
			cleanupCall(t, "Abort", func(ctx context.Context) error {
				_, err := fx.e.c.Abort(ctx, &smv1.AbortRequest{StreamId: s.id})
				return err
			})
			<-ended
		})
		return s
	}
	after := func(prep func(*testing.T, *parityFixture) side, unaryOp func(ctx context.Context, c smv1.StreamServiceClient, id string) error) func(*testing.T, *parityFixture) side {
		return func(t *testing.T, fx *parityFixture) side {
			s := prep(t, fx)
			if err := unaryOp(bg(t), fx.e.c, s.id); err != nil {
				t.Fatalf("preparing: %v", err)
			}
			return s
		}
	}
	closed := after(fresh, func(ctx context.Context, c smv1.StreamServiceClient, id string) error {
		_, err := c.Close(ctx, &smv1.CloseRequest{StreamId: id})
		return err
	})
	eofWritten := after(fresh, func(ctx context.Context, c smv1.StreamServiceClient, id string) error {
		_, err := c.WriteEof(ctx, &smv1.WriteEofRequest{StreamId: id})
		return err
	})
	wrote := after(fresh, func(ctx context.Context, c smv1.StreamServiceClient, id string) error {
		_, err := c.Write(ctx, &smv1.WriteRequest{StreamId: id, Data: []byte("abc")})
		return err
	})
	reset := func(t *testing.T, fx *parityFixture) side {
		s := fx.tcp(t, nil)
		s.peer.(*net.TCPConn).SetLinger(0)
		s.peer.Close()
		st := fx.e.stream(t, s.id)
		waitFor(t, "the reset to arrive", func() bool { return st.R.Exception() != nil && st.lost() })
		return s
	}
	pair := func(t *testing.T, fx *parityFixture) side {
		a, _ := fx.e.openPair(t, nil)
		return side{id: a}
	}
	// relayable: two pairs whose other ends sent bytes and EOF.
	relayable := func(t *testing.T, fx *parityFixture) side {
		a, a2 := fx.e.openPair(t, nil)
		b, b2 := fx.e.openPair(t, nil)
		for id, data := range map[string]string{a2: "abc", b2: "de"} {
			fx.e.write(t, id, data)
			if _, err := fx.e.c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: id}); err != nil {
				t.Fatal(err)
			}
		}
		return side{id: a, id2: b}
	}
	// relayed: a pair end that a Relay owns (until the test ends).
	relayed := func(t *testing.T, fx *parityFixture) side {
		a, _ := fx.e.openPair(t, nil)
		b, _ := fx.e.openPair(t, nil)
		ctx, cancel := context.WithCancel(bg(t))
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			_, _ = fx.e.c.Relay(ctx, &smv1.RelayRequest{FirstStreamId: a, SecondStreamId: b})
		}()
		waitFor(t, "the relay to start", func() bool { return fx.e.info(t, a).GetRelayPeer() == b })
		cancel() // the relay runs on: only the caller stops waiting
		<-ended
		t.Cleanup(func() {
			cleanupCall(t, "Close", func(ctx context.Context) error {
				_, err := fx.e.c.Close(ctx, &smv1.CloseRequest{StreamId: a})
				return err
			})
		})
		return side{id: a, id2: b}
	}
	// attached: an Attach call owns the stream's inbound bytes.
	attached := func(t *testing.T, fx *parityFixture) side {
		s := fx.tcp(t, nil)
		ctx, cancel := context.WithCancel(bg(t))
		t.Cleanup(cancel)
		at, err := fx.e.c.Attach(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := at.Send(&smv1.AttachRequest{StreamId: s.id}); err != nil {
			t.Fatal(err)
		}
		if _, err := at.Recv(); err != nil {
			t.Fatalf("Attach: %v", err)
		}
		return s
	}
	server := func(t *testing.T, fx *parityFixture) side { return fx.server(t, false) }
	deferred := func(t *testing.T, fx *parityFixture) side { return fx.server(t, true) }
	queued := func(t *testing.T, fx *parityFixture) side {
		s := fx.server(t, false)
		srv := fx.e.serverInfo(t, s.id)
		dialPeer(t, "tcp", srv.Sockets[0])
		waitFor(t, "a connection to queue", func() bool { return fx.e.serverInfo(t, s.id).Queued == 1 })
		return s
	}
	tlsReady := func(t *testing.T, fx *parityFixture) side {
		s := fx.tcp(t, nil)
		tc := tls.Server(s.peer, p.peerServerTLS())
		hs := handshakeAsync(tc)
		s.after = func(t *testing.T) {
			wait(t, "the peer's TLS handshake", hs)
			peerWrite(t, tc, "tls")
			fx.e.waitBuffered(t, s.id, 3)
		}
		return s
	}
	closedPort := func() uint32 {
		ln := listenTCP(t)
		port := portOf(ln.Addr())
		ln.Close()
		return port
	}()

	tcpOpen := func(port uint32) *smv1.OpenRequest {
		return &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}}}
	}
	sep := func(s string) []byte { return []byte(s) }
	openHandle := func(t *testing.T, r *smv1.SessionResponse) {
		if id := r.GetOpen().GetStreamId(); !strings.HasPrefix(id, "s-") {
			t.Fatalf("Open stream_id %q, want an s- handle", id)
		}
	}

	cases := []parityCase{
		{name: "open/tcp", prep: none, op: func(s side) proto.Message { return tcpOpen(portOf(s.fx.ln.Addr())) }, check: openHandle},
		{name: "open/unix", prep: none, check: openHandle, op: func(s side) proto.Message {
			return &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: s.fx.unixPath}}}
		}},
		{name: "open/refused", code: codes.Unavailable, reason: ReasonConnectionRefused, prep: none,
			op: func(side) proto.Message { return tcpOpen(closedPort) }},
		{name: "open/port 0", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: none,
			op: func(side) proto.Message { return tcpOpen(0) }},
		{name: "open/no address", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: none,
			op: func(side) proto.Message { return &smv1.OpenRequest{} }},
		{name: "open/no unix socket", code: codes.Unavailable, reason: ReasonNoSuchSocket, prep: none,
			op: func(side) proto.Message {
				return &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: "/nonexistent/sm.sock"}}}
			}},
		{name: "open_pair", prep: none, op: func(side) proto.Message { return &smv1.OpenPairRequest{} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if p := r.GetOpenPair(); p.FirstStreamId == "" || p.SecondStreamId == "" || p.FirstStreamId == p.SecondStreamId {
					t.Fatalf("OpenPair = %v", p)
				}
			}},
		{name: "open_pair/limit 0", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: none,
			op: func(side) proto.Message { return &smv1.OpenPairRequest{Limit: i64(0)} }},
		{name: "start_server", prep: none,
			op: func(side) proto.Message {
				return &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}}
			},
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if s := r.GetStartServer(); s.ServerId == "" || len(s.Sockets) != 1 {
					t.Fatalf("StartServer = %v, want a handle and one socket", s)
				}
			}},
		{name: "start_server/address in use", code: codes.AlreadyExists, reason: ReasonAddressInUse, prep: none,
			op: func(s side) proto.Message {
				return &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(s.fx.ln.Addr())}}}
			}},
		{name: "start_server/backlog", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: none,
			op: func(side) proto.Message {
				return &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}, Backlog: -1}
			}},
		{name: "start_serving", prep: deferred, op: func(s side) proto.Message { return &smv1.StartServingRequest{ServerId: s.id} }},
		{name: "start_serving/unknown", code: codes.NotFound, reason: ReasonServerNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.StartServingRequest{ServerId: "v-nope"} }},
		{name: "accept", prep: queued, op: func(s side) proto.Message { return &smv1.AcceptRequest{ServerId: s.id} }},
		{name: "accept/timeout", code: codes.DeadlineExceeded, reason: ReasonAcceptTimeout, prep: server,
			op: func(s side) proto.Message { return &smv1.AcceptRequest{ServerId: s.id, Timeout: durationpb.New(0)} }},
		{name: "accept/negative timeout", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: server,
			op: func(s side) proto.Message {
				return &smv1.AcceptRequest{ServerId: s.id, Timeout: durationpb.New(-time.Second)}
			}},
		{name: "accept/unknown", code: codes.NotFound, reason: ReasonServerNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.AcceptRequest{ServerId: "v-nope"} }},
		{name: "close_server", prep: queued, op: func(s side) proto.Message { return &smv1.CloseServerRequest{ServerId: s.id, CloseClients: true} }},
		{name: "close_server/unknown", code: codes.NotFound, reason: ReasonServerNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.CloseServerRequest{ServerId: "v-nope"} }},

		{name: "read", prep: with("hello", false), op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(100)} }},
		{name: "read/n 0", prep: with("hello", false), op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(0)} }},
		{name: "read/to EOF", prep: with("hello", true), op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id} }},
		{name: "read/at EOF", prep: with("", true), op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(10)} }},
		{name: "read/replay", prep: readOnce, op: func(s side) proto.Message {
			return &smv1.ReadRequest{StreamId: s.id, N: i64(100), Offset: i64(0)}
		}},
		{name: "read/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.ReadRequest{StreamId: unknownID} }},
		{name: "read/offset ahead", code: codes.OutOfRange, reason: ReasonOffsetAhead, prep: with("hello", false),
			op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(1), Offset: i64(7)} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if md := errorInfo(status.Convert(answerErr(r))).Metadata; md[MetaNextOffset] != "0" {
					t.Fatalf("metadata %v, want next_offset 0", md)
				}
			}},
		{name: "read/offset behind", code: codes.OutOfRange, reason: ReasonOffsetBehind, prep: acked,
			op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(1), Offset: i64(0)} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if md := errorInfo(status.Convert(answerErr(r))).Metadata; md[MetaEarliestOffset] != "4" {
					t.Fatalf("metadata %v, want earliest_offset 4", md)
				}
			}},
		{name: "read/negative offset", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: fresh,
			op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, Offset: i64(-1)} }},
		{name: "read/concurrent", code: codes.FailedPrecondition, reason: ReasonConcurrentRead, prep: reading,
			op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(1)} }},
		{name: "read/reset", code: codes.Unavailable, reason: ReasonConnectionReset, prep: reset,
			op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(1)} }},
		{name: "read/attached", code: codes.FailedPrecondition, reason: ReasonStreamAttached, prep: attached,
			op: func(s side) proto.Message { return &smv1.ReadUntilRequest{StreamId: s.id} }},
		{name: "read/relayed", code: codes.FailedPrecondition, reason: ReasonStreamRelayed, prep: relayed,
			op: func(s side) proto.Message { return &smv1.ReadRequest{StreamId: s.id, N: i64(1)} }},
		{name: "write/relayed", code: codes.FailedPrecondition, reason: ReasonStreamRelayed, prep: relayed,
			op: func(s side) proto.Message { return &smv1.WriteRequest{StreamId: s.id, Data: []byte("x")} }},
		{name: "read_line", prep: with("one\ntwo\n", false), op: func(s side) proto.Message { return &smv1.ReadLineRequest{StreamId: s.id} }},
		{name: "read_line/partial at EOF", prep: with("abc", true), op: func(s side) proto.Message { return &smv1.ReadLineRequest{StreamId: s.id} }},
		{name: "read_line/too long", code: codes.ResourceExhausted, reason: ReasonLineTooLong, prep: limited("0123456789\nnext\n"),
			op: func(s side) proto.Message { return &smv1.ReadLineRequest{StreamId: s.id} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if lo := limitDetail(t, status.Convert(answerErr(r))); lo.NextOffset != 11 || !lo.Found {
					t.Fatalf("LimitOverrunError %v, want found, next_offset 11", lo)
				}
			}},
		{name: "read_exactly", prep: with("hello", false), op: func(s side) proto.Message { return &smv1.ReadExactlyRequest{StreamId: s.id, N: 4} }},
		{name: "read_exactly/incomplete", prep: with("abc", true), op: func(s side) proto.Message { return &smv1.ReadExactlyRequest{StreamId: s.id, N: 10} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if x := r.GetReadExactly(); !x.Incomplete || string(x.Data) != "abc" || x.Expected != 10 {
					t.Fatalf("ReadExactly = %v, want the incomplete abc of 10", x)
				}
			}},
		{name: "read_exactly/negative", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: with("hello", false),
			op:    func(s side) proto.Message { return &smv1.ReadExactlyRequest{StreamId: s.id, N: -1} },
			check: func(t *testing.T, r *smv1.SessionResponse) { wantField(t, status.Convert(answerErr(r)), "n") }},
		{name: "read_exactly/too large", code: codes.ResourceExhausted, reason: ReasonResultTooLarge, prep: fresh,
			op: func(s side) proto.Message { return &smv1.ReadExactlyRequest{StreamId: s.id, N: 1 << 30} }},
		{name: "read_until", prep: with("a;b;", false), op: func(s side) proto.Message { return &smv1.ReadUntilRequest{StreamId: s.id, Separator: sep(";")} }},
		{name: "read_until/separators", prep: with("abcXYdef", false), op: func(s side) proto.Message {
			return &smv1.ReadUntilRequest{StreamId: s.id, Separators: [][]byte{sep("def"), sep("XY")}}
		}},
		{name: "read_until/incomplete", prep: with("abc", true), op: func(s side) proto.Message { return &smv1.ReadUntilRequest{StreamId: s.id} }},
		{name: "read_until/limit overrun", code: codes.ResourceExhausted, reason: ReasonLimitOverrun, prep: limited("0123456789abcdef\nxyz"),
			op: func(s side) proto.Message { return &smv1.ReadUntilRequest{StreamId: s.id} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if lo := limitDetail(t, status.Convert(answerErr(r))); lo.Consumed != 16 || !lo.Found || lo.NextOffset != 0 {
					t.Fatalf("LimitOverrunError %v, want consumed 16, found, next_offset 0", lo)
				}
			}},
		{name: "read_until/empty separator", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: fresh,
			op:    func(s side) proto.Message { return &smv1.ReadUntilRequest{StreamId: s.id, Separator: []byte{}} },
			check: func(t *testing.T, r *smv1.SessionResponse) { wantField(t, status.Convert(answerErr(r)), "separator") }},
		{name: "read_until/both separators", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: fresh,
			op: func(s side) proto.Message {
				return &smv1.ReadUntilRequest{StreamId: s.id, Separator: sep("a"), Separators: [][]byte{sep("b")}}
			}},
		{name: "at_eof", prep: with("x", false), op: func(s side) proto.Message { return &smv1.AtEofRequest{StreamId: s.id} }},
		{name: "at_eof/true", prep: with("", true), op: func(s side) proto.Message { return &smv1.AtEofRequest{StreamId: s.id} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if !r.GetAtEof().GetAtEof() {
					t.Fatal("AtEof = false after EOF")
				}
			}},
		{name: "at_eof/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.AtEofRequest{StreamId: unknownID} }},

		{name: "write", prep: fresh, op: func(s side) proto.Message { return &smv1.WriteRequest{StreamId: s.id, Data: []byte("hi")} }},
		{name: "write/retry", prep: wrote, op: func(s side) proto.Message {
			return &smv1.WriteRequest{StreamId: s.id, Data: []byte("abcdef"), Offset: i64(0)}
		}},
		{name: "write/offset ahead", code: codes.OutOfRange, reason: ReasonOffsetAhead, prep: fresh,
			op: func(s side) proto.Message {
				return &smv1.WriteRequest{StreamId: s.id, Data: []byte("x"), Offset: i64(3)}
			}},
		{name: "write/after write_eof", code: codes.FailedPrecondition, reason: ReasonWriteAfterEOF, prep: eofWritten,
			op: func(s side) proto.Message { return &smv1.WriteRequest{StreamId: s.id, Data: []byte("x")} }},
		{name: "write/closed", code: codes.FailedPrecondition, reason: ReasonStreamClosed, prep: closed,
			op: func(s side) proto.Message { return &smv1.WriteRequest{StreamId: s.id, Data: []byte("x")} }},
		{name: "write/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.WriteRequest{StreamId: unknownID} }},
		{name: "write_lines", prep: fresh, op: func(s side) proto.Message {
			return &smv1.WriteLinesRequest{StreamId: s.id, Lines: [][]byte{sep("a\n"), sep("b\n")}}
		}},
		{name: "write_lines/too many", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: fresh,
			op: func(s side) proto.Message {
				return &smv1.WriteLinesRequest{StreamId: s.id, Lines: make([][]byte, MaxLines+1)}
			}},
		{name: "write_lines/after write_eof", code: codes.FailedPrecondition, reason: ReasonWriteAfterEOF, prep: eofWritten,
			op: func(s side) proto.Message { return &smv1.WriteLinesRequest{StreamId: s.id, Lines: [][]byte{sep("x")}} }},
		{name: "drain", prep: wrote, op: func(s side) proto.Message { return &smv1.DrainRequest{StreamId: s.id} }},
		{name: "drain/reset", code: codes.Unavailable, reason: ReasonConnectionReset, prep: reset,
			op: func(s side) proto.Message { return &smv1.DrainRequest{StreamId: s.id} }},
		{name: "write_eof", prep: wrote, op: func(s side) proto.Message { return &smv1.WriteEofRequest{StreamId: s.id} }},
		{name: "write_eof/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.WriteEofRequest{StreamId: unknownID} }},
		{name: "can_write_eof", prep: fresh, op: func(s side) proto.Message { return &smv1.CanWriteEofRequest{StreamId: s.id} }},
		{name: "can_write_eof/pair", prep: pair, op: func(s side) proto.Message { return &smv1.CanWriteEofRequest{StreamId: s.id} }},
		{name: "close", prep: wrote, op: func(s side) proto.Message { return &smv1.CloseRequest{StreamId: s.id} }},
		{name: "close/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.CloseRequest{StreamId: unknownID} }},
		{name: "abort", prep: wrote, op: func(s side) proto.Message { return &smv1.AbortRequest{StreamId: s.id} }},
		{name: "abort/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.AbortRequest{StreamId: unknownID} }},
		{name: "wait_closed", prep: closed, op: func(s side) proto.Message { return &smv1.WaitClosedRequest{StreamId: s.id} }},
		{name: "wait_closed/reset", code: codes.Unavailable, reason: ReasonConnectionReset, prep: reset,
			op: func(s side) proto.Message { return &smv1.WaitClosedRequest{StreamId: s.id} }},
		{name: "wait_closed/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.WaitClosedRequest{StreamId: unknownID} }},
		{name: "is_closing", prep: fresh, op: func(s side) proto.Message { return &smv1.IsClosingRequest{StreamId: s.id} }},
		{name: "is_closing/closed", prep: closed, op: func(s side) proto.Message { return &smv1.IsClosingRequest{StreamId: s.id} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if !r.GetIsClosing().GetIsClosing() {
					t.Fatal("IsClosing = false after Close")
				}
			}},
		{name: "start_tls", prep: tlsReady, op: func(s side) proto.Message {
			return &smv1.StartTlsRequest{StreamId: s.id, Tls: &smv1.TlsOptions{CaPem: p.caPEM, ServerHostname: "localhost"}}
		}},
		{name: "start_tls/no options", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: fresh,
			op: func(s side) proto.Message { return &smv1.StartTlsRequest{StreamId: s.id} }},
		{name: "start_tls/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message {
				return &smv1.StartTlsRequest{StreamId: unknownID, Tls: &smv1.TlsOptions{InsecureSkipVerify: true}}
			}},
		{name: "get_extra_info/peername", prep: fresh, op: func(s side) proto.Message {
			return &smv1.GetExtraInfoRequest{StreamId: s.id, Name: "peername"}
		}},
		{name: "get_extra_info/unknown name", prep: fresh, op: func(s side) proto.Message {
			return &smv1.GetExtraInfoRequest{StreamId: s.id, Name: "no such thing"}
		}},
		{name: "get_extra_info/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.GetExtraInfoRequest{StreamId: unknownID, Name: "peername"} }},
		{name: "relay", prep: relayable, op: func(s side) proto.Message { return &smv1.RelayRequest{FirstStreamId: s.id, SecondStreamId: s.id2} },
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if x := r.GetRelay(); x.FirstToSecond != 3 || x.SecondToFirst != 2 {
					t.Fatalf("Relay = %v, want 3 bytes one way and 2 the other", x)
				}
			}},
		{name: "relay/itself", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: pair,
			op: func(s side) proto.Message { return &smv1.RelayRequest{FirstStreamId: s.id, SecondStreamId: s.id} }},
		{name: "relay/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message {
				return &smv1.RelayRequest{FirstStreamId: unknownID, SecondStreamId: unknownID + "0"}
			}},
		{name: "share", prep: fresh, op: func(s side) proto.Message {
			return &smv1.ShareRequest{Handle: &smv1.ShareRequest_StreamId{StreamId: s.id}, Add: []string{"uid:4242", "bob"}}
		},
			check: func(t *testing.T, r *smv1.SessionResponse) {
				if x := r.GetShare(); len(x.SharedWith) != 2 || x.SharedWith[0] != "bob" || x.SharedWith[1] != "uid:4242" {
					t.Fatalf("Share = %v, want bob and uid:4242", x)
				}
			}},
		{name: "set_sock_opt", prep: fresh, op: func(s side) proto.Message {
			return &smv1.SetSockOptRequest{StreamId: s.id, Name: "TCP_NODELAY", Value: 1}
		}},
		{name: "set_sock_opt/unknown name", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: fresh, op: func(s side) proto.Message {
			return &smv1.SetSockOptRequest{StreamId: s.id, Name: "IP_TTL", Value: 1}
		}},
		{name: "get_sock_opt", prep: fresh, op: func(s side) proto.Message {
			return &smv1.GetSockOptRequest{StreamId: s.id, Name: "SO_KEEPALIVE"}
		}},
		{name: "get_sock_opt/unknown", code: codes.NotFound, reason: ReasonStreamNotFound, prep: none,
			op: func(side) proto.Message { return &smv1.GetSockOptRequest{StreamId: unknownID, Name: "SO_KEEPALIVE"} }},
		{name: "share/no handle", code: codes.InvalidArgument, reason: ReasonInvalidArgument, prep: none,
			op: func(side) proto.Message { return &smv1.ShareRequest{Add: []string{"bob"}} }},
		{name: "share/unknown", code: codes.NotFound, reason: ReasonServerNotFound, prep: none,
			op: func(side) proto.Message {
				return &smv1.ShareRequest{Handle: &smv1.ShareRequest_ServerId{ServerId: "v-nope"}}
			}},
	}

	covered := map[string]bool{}
	ran := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ran++
			fx := &parityFixture{e: e, ln: listenTCP(t), unixPath: filepath.Join(tempDir(t), "peer.sock")}
			uln, err := net.Listen("unix", fx.unixPath)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { uln.Close() })
			u, s := tc.prep(t, fx), tc.prep(t, fx)
			u.fx, s.fx = fx, fx
			ureq, req := sreq(tc.op(u)), sreq(tc.op(s))
			covered[opName(req)] = true

			want := unary(bg(t), e.c, ureq)
			if u.after != nil {
				u.after(t)
			}
			got := sess.start(t, req).wait(t)
			if s.after != nil {
				s.after(t)
			}
			switch {
			case tc.code == codes.OK:
				wantOK(t, got)
			default:
				wantAnswerStatus(t, got, tc.code, tc.reason)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			// What differs between the two sides: their handles, and the
			// addresses of connections that are not the same.
			for _, r := range []*smv1.SessionResponse{want, got} {
				switch x := r.Result.(type) {
				case *smv1.SessionResponse_Open:
					x.Open.StreamId, x.Open.Sockname = "", ""
				case *smv1.SessionResponse_OpenPair:
					x.OpenPair.FirstStreamId, x.OpenPair.SecondStreamId = "", ""
				case *smv1.SessionResponse_StartServer:
					x.StartServer.ServerId, x.StartServer.Sockets = "", nil
				case *smv1.SessionResponse_Accept:
					x.Accept.StreamId, x.Accept.Peername = "", ""
				}
			}
			if se := got.GetError(); se != nil && s.id != "" {
				se.Message = strings.ReplaceAll(se.Message, s.id, u.id)
				for _, x := range [][2]string{{s.id2, u.id2}, {s.local, u.local}} {
					if x[0] != "" {
						se.Message = strings.ReplaceAll(se.Message, x[0], x[1])
					}
				}
			}
			sameAnswer(t, got, want)

			// Both sides are left in the same state.
			if u.peer != nil {
				ui, si := e.info(t, u.id), e.info(t, s.id)
				if ui == nil || si == nil {
					if (ui == nil) != (si == nil) {
						t.Fatalf("after the call: unary side listed %v, session side listed %v", ui != nil, si != nil)
					}
					return
				}
				type state struct {
					kind, state                                  string
					in, out, buffered, retained, earliest, wrote int64
				}
				of := func(i *smv1.StreamInfo) state {
					return state{i.Kind, i.State, i.BytesIn, i.BytesOut, i.Buffered, i.Retained, i.EarliestOffset, i.WriteBuffered}
				}
				if us, ss := of(ui), of(si); us != ss {
					t.Fatalf("after the call the unary side is %+v, the session side %+v", us, ss)
				}
			}
		})
	}
	if t.Failed() || ran < len(cases) {
		return
	}
	ops := (&smv1.SessionRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
	for i := range ops.Len() {
		if name := string(ops.Get(i).Name()); name != "cancel" && !covered[name] {
			t.Errorf("no parity case for %s", name)
		}
	}
}

// Order: operations on one handle run in the order they arrived.

func TestSessionPipelinedWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	s := newSession(t, e.c)

	var (
		want  []byte
		ends  []int64 // the next_offset each write must answer
		calls []*pending
	)
	// Without offsets every write appends, in the order sent.
	for i := range 300 {
		chunk := []byte(fmt.Sprintf("write %03d;", i))
		var m proto.Message = &smv1.WriteRequest{StreamId: id, Data: chunk}
		if i%3 == 2 {
			m = &smv1.WriteLinesRequest{StreamId: id, Lines: [][]byte{chunk[:4], chunk[4:]}}
		}
		want = append(want, chunk...)
		ends = append(ends, int64(len(want)))
		calls = append(calls, s.start(t, sreq(m)))
	}
	// With offsets, each chunk twice: the second is a retry and skipped.
	for i := range 100 {
		chunk := []byte(fmt.Sprintf("again %03d;", i))
		off := int64(len(want))
		want = append(want, chunk...)
		for range 2 {
			ends = append(ends, int64(len(want)))
			calls = append(calls, s.start(t, sreq(&smv1.WriteRequest{StreamId: id, Data: chunk, Offset: i64(off)})))
		}
	}
	wantBytes(t, "the peer received", []byte(peerRead(t, peer, len(want))), want)
	for i, c := range calls {
		r := wantOK(t, c.wait(t))
		next := r.GetWrite().GetNextOffset()
		if wl := r.GetWriteLines(); wl != nil {
			next = wl.NextOffset
		}
		if next != ends[i] {
			t.Fatalf("write %d answered next_offset %d, want %d", i, next, ends[i])
		}
		if got := s.arrival(c.id); got != i {
			t.Fatalf("write %d was answered %dth", i, got)
		}
	}
}

func TestSessionPipelinedReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	s := newSession(t, e.c)

	// All sent before any byte arrives: the first waits, the rest queue
	// behind it. Every other one names the offset it starts at.
	data := pattern(64<<10, 3)
	var calls []*pending
	for i := range 64 {
		var off *int64
		if i%2 == 1 {
			off = i64(int64(i) << 10)
		}
		calls = append(calls, s.start(t, sreq(&smv1.ReadExactlyRequest{StreamId: id, N: 1 << 10, Offset: off})))
	}
	// Then lines, separators and reads of up to 7 bytes, to EOF and past.
	var text bytes.Buffer
	for i := range 40 {
		fmt.Fprintf(&text, "line %d\n", i)
		calls = append(calls, s.start(t, sreq(&smv1.ReadLineRequest{StreamId: id})))
	}
	text.WriteString("tail;end;")
	for range 2 {
		calls = append(calls, s.start(t, sreq(&smv1.ReadUntilRequest{StreamId: id, Separator: []byte(";")})))
	}
	blob := pattern(500, 7)
	var small []*pending
	for range 100 {
		small = append(small, s.start(t, sreq(&smv1.ReadRequest{StreamId: id, N: i64(7)})))
	}
	peerWrite(t, peer, string(data))
	peerWrite(t, peer, text.String())
	peerWrite(t, peer, string(blob))
	peer.CloseWrite()

	lines := strings.SplitAfter(text.String(), "\n")
	want := func(i int) []byte {
		switch {
		case i < 64:
			return data[i<<10 : (i+1)<<10]
		case i < 104:
			return []byte(lines[i-64])
		case i == 104:
			return []byte("tail;")
		}
		return []byte("end;")
	}
	next := int64(0)
	for i, c := range calls {
		r := wantOK(t, c.wait(t))
		var got []byte
		var off int64
		switch x := r.Result.(type) {
		case *smv1.SessionResponse_ReadExactly:
			got, off = x.ReadExactly.Data, x.ReadExactly.NextOffset
		case *smv1.SessionResponse_ReadLine:
			got, off = x.ReadLine.Data, x.ReadLine.NextOffset
		case *smv1.SessionResponse_ReadUntil:
			got, off = x.ReadUntil.Data, x.ReadUntil.NextOffset
		}
		next += int64(len(want(i)))
		wantBytes(t, fmt.Sprintf("read %d", i), got, want(i))
		if off != next {
			t.Fatalf("read %d answered next_offset %d, want %d", i, off, next)
		}
		if a := s.arrival(c.id); a != i {
			t.Fatalf("read %d was answered %dth", i, a)
		}
	}
	var rest []byte
	for i, c := range small {
		r := wantOK(t, c.wait(t)).GetRead()
		if r.NextOffset != next+int64(len(r.Data)) {
			t.Fatalf("read(7) %d: %d bytes, next_offset %d after %d", i, len(r.Data), r.NextOffset, next)
		}
		next = r.NextOffset
		rest = append(rest, r.Data...)
		if r.Eof != (len(rest) == len(blob)) {
			t.Fatalf("read(7) %d: eof %v after %d of %d bytes", i, r.Eof, len(rest), len(blob))
		}
	}
	wantBytes(t, "reads of up to 7 bytes", rest, blob)
}

// Independence: a waiting operation holds up only what comes after it on
// the same handle and lane.

func TestSessionLanesIndependent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := newSession(t, e.c)

	t.Run("a waiting read", func(t *testing.T) {
		a, pa := e.openTCP(t, nil)
		b, pb := e.openTCP(t, nil)
		readA := s.start(t, sreq(&smv1.ReadRequest{StreamId: a.StreamId, N: i64(100)}))
		waitFor(t, "the read on A to wait", e.stream(t, a.StreamId).R.Waiting)

		// Another stream: a write, the peer's reply, a read.
		wantOK(t, s.do(t, &smv1.WriteRequest{StreamId: b.StreamId, Data: []byte("ping")}))
		if got := peerRead(t, pb, 4); got != "ping" {
			t.Fatalf("peer B got %q", got)
		}
		peerWrite(t, pb, "pong")
		if r := wantOK(t, s.do(t, &smv1.ReadExactlyRequest{StreamId: b.StreamId, N: 4})).GetReadExactly(); string(r.Data) != "pong" {
			t.Fatalf("read on B = %v", r)
		}
		// A read waiting on B too.
		readB := s.start(t, sreq(&smv1.ReadRequest{StreamId: b.StreamId, N: i64(100)}))
		waitFor(t, "the read on B to wait", e.stream(t, b.StreamId).R.Waiting)
		peerWrite(t, pb, "more")
		if r := wantOK(t, readB.wait(t)).GetRead(); string(r.Data) != "more" {
			t.Fatalf("read on B = %v", r)
		}

		// The same stream's other operations.
		wantOK(t, s.do(t, &smv1.WriteRequest{StreamId: a.StreamId, Data: []byte("hello")}))
		if got := peerRead(t, pa, 5); got != "hello" {
			t.Fatalf("peer A got %q", got)
		}
		if r := wantOK(t, s.do(t, &smv1.IsClosingRequest{StreamId: a.StreamId})); r.GetIsClosing().GetIsClosing() {
			t.Fatal("IsClosing = true")
		}
		wantOK(t, s.do(t, &smv1.GetExtraInfoRequest{StreamId: a.StreamId, Name: "sockname"}))
		readA.notYet(t, "no byte came to A")

		// Close ends the waiting read as it ends a unary read.
		twin, _ := e.openTCP(t, nil)
		unaryRead := make(chan *smv1.SessionResponse, 1)
		go func() {
			unaryRead <- unary(bg(t), e.c, sreq(&smv1.ReadRequest{StreamId: twin.StreamId, N: i64(100)}))
		}()
		waitFor(t, "the unary read to wait", e.stream(t, twin.StreamId).R.Waiting)
		e.closeStream(t, twin.StreamId)
		wantOK(t, s.do(t, &smv1.CloseRequest{StreamId: a.StreamId}))
		sameAnswer(t, readA.wait(t), <-unaryRead)
		peerSeesEOF(t, pa)
	})

	t.Run("wait_closed", func(t *testing.T) {
		a, pa := e.openTCP(t, nil)
		wc := s.start(t, sreq(&smv1.WaitClosedRequest{StreamId: a.StreamId}))
		wantOK(t, s.do(t, &smv1.WriteRequest{StreamId: a.StreamId, Data: []byte("bye")}))
		wc.notYet(t, "the stream is open")
		wantOK(t, s.do(t, &smv1.CloseRequest{StreamId: a.StreamId}))
		wantOK(t, wc.wait(t))
		if got := peerReadAll(t, pa); got != "bye" {
			t.Fatalf("peer got %q before EOF", got)
		}
	})

	t.Run("accept", func(t *testing.T) {
		srv := e.startServer(t, nil)
		acc := s.start(t, sreq(&smv1.AcceptRequest{ServerId: srv.ServerId}))
		wantOK(t, s.do(t, &smv1.CloseServerRequest{ServerId: srv.ServerId}))
		// Waiting when the server closed, or (on a slow machine) not yet
		// started then.
		r := acc.wait(t)
		if st := wantAnswerStatus(t, r, codes.NotFound, ""); errorInfo(st).Reason != ReasonServerClosed && errorInfo(st).Reason != ReasonServerNotFound {
			t.Fatalf("accept answered %v, want SERVER_CLOSED or SERVER_NOT_FOUND", st.Proto())
		}
	})
}

// Cancel and timeout end a call as a cancelled or expired unary call ends,
// consuming nothing.

func TestSessionCancel(t *testing.T) {
	t.Parallel()
	cancelled := errorAnswer(status.Convert(toStatus(context.Canceled)))

	t.Run("waiting read", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		resp, peer := e.openTCP(t, nil)
		id := resp.StreamId
		rd := s.start(t, sreq(&smv1.ReadRequest{StreamId: id, N: i64(100)}))
		waitFor(t, "the read to wait", e.stream(t, id).R.Waiting)
		if c := wantOK(t, s.start(t, cancelReq(rd.id)).wait(t)); !c.GetCancel().GetCancelled() {
			t.Fatalf("cancel of a waiting read answered %v, want cancelled", c)
		}
		sameAnswer(t, rd.wait(t), cancelled)
		e.waitIdle(t, id)
		peerWrite(t, peer, "data")
		if r := wantOK(t, s.do(t, &smv1.ReadRequest{StreamId: id, N: i64(100)})).GetRead(); string(r.Data) != "data" || r.NextOffset != 4 {
			t.Fatalf("read after the cancelled one = %v, want data, next_offset 4", r)
		}
		// A finished call, and one never sent: nothing to cancel.
		for _, callID := range []int64{rd.id, 987654} {
			if c := wantOK(t, s.start(t, cancelReq(callID)).wait(t)); c.GetCancel().GetCancelled() {
				t.Fatalf("cancel of call %d answered %v, want not cancelled", callID, c)
			}
		}
	})

	t.Run("queued read", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		resp, peer := e.openTCP(t, nil)
		id := resp.StreamId
		first := s.start(t, sreq(&smv1.ReadExactlyRequest{StreamId: id, N: 2}))
		second := s.start(t, sreq(&smv1.ReadExactlyRequest{StreamId: id, N: 2}))
		third := s.start(t, sreq(&smv1.ReadExactlyRequest{StreamId: id, N: 2}))
		waitFor(t, "the first read to wait", e.stream(t, id).R.Waiting)
		if c := wantOK(t, s.start(t, cancelReq(second.id)).wait(t)); !c.GetCancel().GetCancelled() {
			t.Fatalf("cancel of a queued read answered %v, want cancelled", c)
		}
		// Answered now, not when the read before it ends.
		sameAnswer(t, second.wait(t), cancelled)
		first.notYet(t, "no byte came")
		peerWrite(t, peer, "abcd")
		for _, c := range []struct {
			p    *pending
			want string
		}{{first, "ab"}, {third, "cd"}} {
			if r := wantOK(t, c.p.wait(t)).GetReadExactly(); string(r.Data) != c.want {
				t.Fatalf("read = %v, want %q", r, c.want)
			}
		}
	})

	t.Run("queued write", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		a, b := e.openPair(t, nil)
		big := pattern(900<<10, 1)
		wantOK(t, s.do(t, &smv1.WriteRequest{StreamId: a, Data: big}))
		drain := s.start(t, sreq(&smv1.DrainRequest{StreamId: a}))
		waitFor(t, "the drain to wait", func() bool { return e.stream(t, a).active.Load() == 1 })
		wr := s.start(t, sreq(&smv1.WriteRequest{StreamId: a, Data: []byte("late")}))
		if c := wantOK(t, s.start(t, cancelReq(wr.id)).wait(t)); !c.GetCancel().GetCancelled() {
			t.Fatalf("cancel of a queued write answered %v, want cancelled", c)
		}
		sameAnswer(t, wr.wait(t), cancelled)
		got := e.readExactly(t, b, int64(len(big)))
		wantBytes(t, "the pair's other end", got.Data, big)
		wantOK(t, drain.wait(t))
		if info := e.info(t, a); info.BytesOut != int64(len(big)) {
			t.Fatalf("bytes_out %d, want %d: the cancelled write was written", info.BytesOut, len(big))
		}
	})

	t.Run("waiting accept", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		srv := e.startServer(t, nil)
		acc := s.start(t, sreq(&smv1.AcceptRequest{ServerId: srv.ServerId}))
		wantOK(t, s.start(t, cancelReq(acc.id)).wait(t))
		sameAnswer(t, acc.wait(t), cancelled)
		dialPeer(t, "tcp", srv.Sockets[0])
		waitFor(t, "the connection to queue", func() bool { return e.serverInfo(t, srv.ServerId).Queued == 1 })
		wantOK(t, s.do(t, &smv1.AcceptRequest{ServerId: srv.ServerId}))
	})
}

func TestSessionTimeout(t *testing.T) {
	t.Parallel()
	expired := errorAnswer(status.Convert(toStatus(context.DeadlineExceeded)))
	const short = 50 * time.Millisecond

	t.Run("waiting read", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		resp, peer := e.openTCP(t, nil)
		id := resp.StreamId
		sameAnswer(t, s.start(t, withTimeout(sreq(&smv1.ReadRequest{StreamId: id, N: i64(100)}), short)).wait(t), expired)
		e.waitIdle(t, id)
		if info := e.info(t, id); info.BytesIn != 0 {
			t.Fatalf("bytes_in %d after a read that expired", info.BytesIn)
		}
		peerWrite(t, peer, "data")
		if r := wantOK(t, s.do(t, &smv1.ReadRequest{StreamId: id, N: i64(100), Offset: i64(0)})).GetRead(); string(r.Data) != "data" {
			t.Fatalf("read after the expired one = %v", r)
		}
	})

	t.Run("queued read", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		resp, peer := e.openTCP(t, nil)
		id := resp.StreamId
		first := s.start(t, sreq(&smv1.ReadRequest{StreamId: id, N: i64(100)}))
		waitFor(t, "the first read to wait", e.stream(t, id).R.Waiting)
		// Its deadline passes while it waits behind the first.
		sameAnswer(t, s.start(t, withTimeout(sreq(&smv1.ReadRequest{StreamId: id, N: i64(100)}), short)).wait(t), expired)
		first.notYet(t, "no byte came")
		peerWrite(t, peer, "x")
		if r := wantOK(t, first.wait(t)).GetRead(); string(r.Data) != "x" {
			t.Fatalf("first read = %v", r)
		}
	})

	t.Run("other lanes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		resp, _ := e.openTCP(t, nil)
		srv := e.startServer(t, nil)
		a, _ := e.openPair(t, nil)
		wantOK(t, s.do(t, &smv1.WriteRequest{StreamId: a, Data: pattern(900<<10, 2)}))
		for _, m := range []proto.Message{
			&smv1.WaitClosedRequest{StreamId: resp.StreamId},
			&smv1.AcceptRequest{ServerId: srv.ServerId},
			&smv1.DrainRequest{StreamId: a},
		} {
			sameAnswer(t, s.start(t, withTimeout(sreq(m), short)).wait(t), expired)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		s := newSession(t, e.c)
		resp, peer := e.openTCP(t, nil)
		for _, d := range []time.Duration{0, -time.Second} {
			for _, m := range []proto.Message{
				&smv1.ReadRequest{StreamId: resp.StreamId},
				&smv1.WriteRequest{StreamId: resp.StreamId, Data: []byte("no")},
			} {
				r := s.start(t, withTimeout(sreq(m), d)).wait(t)
				wantField(t, wantAnswerStatus(t, r, codes.InvalidArgument, ReasonInvalidArgument), "timeout")
			}
		}
		wantOK(t, s.do(t, &smv1.WriteRequest{StreamId: resp.StreamId, Data: []byte("yes")}))
		if got := peerRead(t, peer, 3); got != "yes" {
			t.Fatalf("peer got %q: a refused write was written", got)
		}
	})
}

// call_ids: unique among the calls in flight; a request needs an operation.
func TestSessionCallIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := newSession(t, e.c)
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	const dup = 7
	rd := s.start(t, &smv1.SessionRequest{CallId: dup, Op: &smv1.SessionRequest_Read{Read: &smv1.ReadRequest{StreamId: id, N: i64(10)}}})
	waitFor(t, "the read to wait", e.stream(t, id).R.Waiting)
	for _, m := range []proto.Message{
		&smv1.ReadRequest{StreamId: id, N: i64(10)},
		&smv1.WriteRequest{StreamId: id, Data: []byte("dup")},
		&smv1.OpenPairRequest{},
		&smv1.CancelCallRequest{CallId: dup},
	} {
		req := sreq(m)
		req.CallId = dup
		r := s.start(t, req).wait(t)
		wantField(t, wantAnswerStatus(t, r, codes.InvalidArgument, ReasonInvalidArgument), "call_id")
	}
	if info := e.info(t, id); info.BytesOut != 0 {
		t.Fatalf("bytes_out %d: a request with a duplicate call_id was run", info.BytesOut)
	}
	peerWrite(t, peer, "data")
	if r := wantOK(t, rd.wait(t)).GetRead(); string(r.Data) != "data" {
		t.Fatalf("the first call %d = %v", dup, r)
	}
	// Once answered, a call_id may be used again.
	req := sreq(&smv1.IsClosingRequest{StreamId: id})
	req.CallId = dup
	wantOK(t, s.start(t, req).wait(t))

	r := s.start(t, &smv1.SessionRequest{}).wait(t)
	wantField(t, wantAnswerStatus(t, r, codes.InvalidArgument, ReasonInvalidArgument), "op")
}

// Backpressure: with MaxSessionCalls in flight the daemon takes no more
// requests (and starts nothing for them) until one finishes. Not parallel:
// it counts goroutines.
func TestSessionBackpressure(t *testing.T) {
	e := newEnv(t, Config{})
	const streams = 16
	var firsts, seconds []string
	for range streams {
		a, b := e.openPair(t, nil)
		firsts, seconds = append(firsts, a), append(seconds, b)
	}
	out, peer := e.openTCP(t, nil)
	s := newSession(t, e.c)
	wantOK(t, s.do(t, &smv1.IsClosingRequest{StreamId: out.StreamId}))
	base := runtime.NumGoroutine()

	// MaxSessionCalls reads, each waiting for a byte: one per stream waits
	// in the stream, the others queue behind it.
	reads := make([]*pending, MaxSessionCalls)
	for i := range reads {
		reads[i] = s.start(t, sreq(&smv1.ReadExactlyRequest{StreamId: firsts[i%streams], N: 1}))
	}
	for _, id := range firsts {
		waitFor(t, "a read to wait on "+id, e.stream(t, id).R.Waiting)
	}
	if g := runtime.NumGoroutine(); g > base+streams+32 {
		t.Fatalf("%d goroutines with %d reads in flight on %d streams, %d before", g, MaxSessionCalls, streams, base)
	}
	// More requests: the daemon does not take them.
	const more = 200
	writes := make([]*pending, more)
	for i := range writes {
		writes[i] = s.start(t, sreq(&smv1.WriteRequest{StreamId: out.StreamId, Data: []byte{byte(i)}}))
	}
	for range 20 { // round trips on the daemon, to give a wrong one the chance to show
		if info := e.info(t, out.StreamId); info.BytesOut != 0 {
			t.Fatalf("bytes_out %d: the daemon ran a request beyond the %d in flight", info.BytesOut, MaxSessionCalls)
		}
	}
	writes[0].notYet(t, "MaxSessionCalls are in flight")
	if g := runtime.NumGoroutine(); g > base+streams+32 {
		t.Fatalf("%d goroutines with %d more requests sent, %d before", g, more, base)
	}

	// One read finishes: the first write is taken, after it.
	if _, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: seconds[0], Data: []byte{0}}); err != nil {
		t.Fatal(err)
	}
	r0 := wantOK(t, reads[0].wait(t))
	if x := r0.GetReadExactly(); len(x.Data) != 1 || x.Data[0] != 0 {
		t.Fatalf("read 0 = %v", r0)
	}
	w0 := wantOK(t, writes[0].wait(t))
	if s.arrival(w0.CallId) < s.arrival(r0.CallId) {
		t.Fatal("a request beyond MaxSessionCalls was answered before any call in flight finished")
	}

	// The rest: every stream gets the bytes its reads wait for.
	per := MaxSessionCalls / streams
	for i, id := range seconds {
		data := pattern(per, byte(i))
		if i == 0 {
			data = data[1:] // its first byte went above (pattern(_, 0) starts with 0)
		}
		if _, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	for i, rd := range reads[1:] {
		i++
		want := pattern(per, byte(i%streams))[i/streams]
		if r := wantOK(t, rd.wait(t)).GetReadExactly(); len(r.Data) != 1 || r.Data[0] != want {
			t.Fatalf("read %d = %v, want %d", i, r, want)
		}
	}
	if w0.GetWrite().GetNextOffset() != 1 {
		t.Fatalf("write 0 = %v, want next_offset 1", w0)
	}
	for i, w := range writes[1:] {
		if r := wantOK(t, w.wait(t)).GetWrite(); r.NextOffset != int64(i+2) {
			t.Fatalf("write %d: next_offset %d, want %d", i+1, r.NextOffset, i+2)
		}
	}
	got := peerRead(t, peer, more)
	for i := range more {
		if got[i] != byte(i) {
			t.Fatalf("the peer got byte %d at %d", got[i], i)
		}
	}
	if err := s.end(t); err != io.EOF {
		t.Fatalf("the session ended with %v, want OK", err)
	}
	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

// No leaks: a session that ends leaves no goroutine and no call on a
// stream. Not parallel: it counts goroutines.
func TestSessionEnds(t *testing.T) {
	// busy sends many operations, some of which wait, and returns them and
	// what releases the waiting ones.
	busy := func(t *testing.T, e *env, s *sessionClient, id, other, serverID string) []*pending {
		var calls []*pending
		for i := range 50 {
			calls = append(calls,
				s.start(t, sreq(&smv1.WriteRequest{StreamId: other, Data: []byte{byte(i)}})),
				s.start(t, sreq(&smv1.IsClosingRequest{StreamId: id})),
				s.start(t, sreq(&smv1.GetExtraInfoRequest{StreamId: other, Name: "peername"})),
			)
		}
		for range 20 {
			calls = append(calls, s.start(t, sreq(&smv1.ReadExactlyRequest{StreamId: id, N: 1})))
		}
		calls = append(calls,
			s.start(t, sreq(&smv1.AcceptRequest{ServerId: serverID})),
			s.start(t, sreq(&smv1.WaitClosedRequest{StreamId: id})),
			s.start(t, sreq(&smv1.DrainRequest{StreamId: other})),
			s.start(t, sreq(&smv1.ReadRequest{StreamId: unknownID})),
		)
		waitFor(t, "a read to wait", e.stream(t, id).R.Waiting)
		return calls
	}

	t.Run("half-close", func(t *testing.T) {
		e := newEnv(t, Config{})
		resp, peer := e.openTCP(t, nil)
		other, _ := e.openTCP(t, nil)
		srv := e.startServer(t, nil)
		base := runtime.NumGoroutine()
		s := newSession(t, e.c)
		calls := busy(t, e, s, resp.StreamId, other.StreamId, srv.ServerId)
		s.sendMu.Lock()
		err := s.stream.CloseSend()
		s.sendMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		// The daemon answers what is in flight before it ends the call.
		peerWrite(t, peer, strings.Repeat("x", 20))
		if _, err := e.c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: srv.ServerId}); err != nil {
			t.Fatal(err)
		}
		e.closeStream(t, resp.StreamId)
		if err := s.wait(t); err != io.EOF {
			t.Fatalf("the session ended with %v, want OK", err)
		}
		for _, c := range calls {
			c.wait(t)
		}
		waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
	})

	t.Run("cancel", func(t *testing.T) {
		e := newEnv(t, Config{})
		resp, peer := e.openTCP(t, nil)
		id := resp.StreamId
		other, _ := e.openTCP(t, nil)
		srv := e.startServer(t, nil)
		base := runtime.NumGoroutine()
		s := newSession(t, e.c)
		busy(t, e, s, id, other.StreamId, srv.ServerId)
		s.cancel()
		if err := s.wait(t); status.Code(err) != codes.Canceled {
			t.Fatalf("the session ended with %v, want CANCELLED", err)
		}
		e.waitIdle(t, id)
		waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
		// The calls that were waiting took nothing.
		peerWrite(t, peer, "abc")
		if got := e.readExactly(t, id, 3); string(got.Data) != "abc" || got.NextOffset != 3 {
			t.Fatalf("read after the session = %v, want abc, next_offset 3", got)
		}
		dialPeer(t, "tcp", srv.Sockets[0])
		e.accept(t, srv.ServerId)
	})
}

// Resume: a client that keeps its offsets carries a transfer across broken
// sessions without losing or duplicating a byte. It pipelines writes with
// the offsets they start at, and keeps one read in flight at the offset it
// has received up to; sessions break at random points.
func TestSessionResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	echoed := make(chan error, 1)
	go func() {
		_, err := io.Copy(peer, peer)
		if err == nil {
			err = peer.CloseWrite()
		}
		echoed <- err
	}()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	data := pattern(4<<20, 9)
	const (
		chunk    = 32 << 10
		window   = 256 << 10 // most bytes sent and not yet echoed back
		inFlight = 4         // writes
		readN    = 64 << 10
	)
	var (
		acked  int64  // outbound: bytes the daemon confirmed accepted
		got    []byte // inbound: bytes received, in order
		eofAck bool   // write_eof answered
		eof    bool
		callID int64
	)
	round := 0
	for ; !eof; round++ {
		if round == 5000 {
			t.Fatalf("no end after %d sessions: %d bytes acked, %d received", round, acked, len(got))
		}
		ctx, cancel := context.WithCancel(bg(t))
		stream, err := e.c.Session(ctx)
		if err != nil {
			cancel()
			t.Fatalf("Session: %v", err)
		}
		kinds := map[int64]string{}
		send := func(m proto.Message) {
			callID++
			req := sreq(m)
			req.CallId = callID
			kinds[callID] = opName(req)
			if err := stream.Send(req); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		var (
			next      = acked // the next outbound offset to send
			writes    int
			reading   bool
			eofSent   bool
			responses = rng.IntN(12) // before this session breaks
		)
		pump := func() {
			for writes < inFlight && next < int64(len(data)) && next-int64(len(got)) < window {
				end := min(next+chunk, int64(len(data)))
				send(&smv1.WriteRequest{StreamId: id, Data: data[next:end], Offset: i64(next)})
				next = end
				writes++
			}
			if acked == int64(len(data)) && !eofAck && !eofSent {
				send(&smv1.WriteEofRequest{StreamId: id})
				eofSent = true
			}
			if !reading {
				send(&smv1.ReadRequest{StreamId: id, N: i64(readN), Offset: i64(int64(len(got)))})
				reading = true
			}
		}
		pump()
		for ; responses > 0 && !eof; responses-- {
			r, err := stream.Recv()
			if err != nil {
				t.Fatalf("session %d: %v", round, err)
			}
			kind := kinds[r.CallId]
			switch x := r.Result.(type) {
			case *smv1.SessionResponse_Write:
				writes--
				acked = max(acked, x.Write.NextOffset)
			case *smv1.SessionResponse_WriteEof:
				eofAck = true
			case *smv1.SessionResponse_Read:
				reading = false
				if start := x.Read.NextOffset - int64(len(x.Read.Data)); start != int64(len(got)) {
					t.Fatalf("session %d: a read answered bytes from %d, want %d", round, start, len(got))
				}
				got = append(got, x.Read.Data...)
				eof = x.Read.Eof
			case *smv1.SessionResponse_Error:
				err := answerErr(r)
				switch {
				case kind == "write" && status.Code(err) == codes.ResourceExhausted:
					writes--
					next = acked // the write buffer was full: send again from there
				case kind == "read" && status.Code(err) == codes.Aborted:
					reading = false // a read of a broken session took its place: again
				default:
					t.Fatalf("session %d: %s answered %v", round, kind, err)
				}
			default:
				t.Fatalf("session %d: unexpected answer %v", round, r)
			}
			pump()
		}
		cancel()
		for {
			if _, err := stream.Recv(); err != nil {
				break
			}
		}
	}
	wantBytes(t, "the bytes echoed back", got, data)
	t.Logf("%d bytes there and back through %d sessions", len(data), round)
	select {
	case err := <-echoed:
		if err != nil {
			t.Fatalf("echo peer: %v", err)
		}
	case <-time.After(failAfter):
		t.Fatal("the echo peer never saw EOF")
	}
}

// A client that pipelines reads, each with the offset it will start at and
// ack = what it has received, and loses the session before it saw their
// answers, resumes at the first offset it has not received and loses
// nothing. Without ack, a read's offset acknowledges everything before it,
// so the same pipelining forgets the bytes of the answers still on their
// way.
func TestSessionResumeAfterPipelinedReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "0123456789")
	e.waitBuffered(t, id, 10)

	ctx, cancel := context.WithCancel(bg(t))
	stream, err := e.c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range []int64{0, 5} {
		// The second read's offset is where the first will end; its ack is
		// what the client has received: nothing yet.
		req := sreq(&smv1.ReadExactlyRequest{StreamId: id, N: 5, Offset: i64(off), Ack: i64(0)})
		req.CallId = int64(i + 1)
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both reads to run", func() bool { return e.stream(t, id).R.Consumed() == 10 })
	cancel() // their answers were never received
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}

	s := newSession(t, e.c)
	r := s.do(t, &smv1.ReadExactlyRequest{StreamId: id, N: 10, Offset: i64(0)})
	if err := answerErr(r); err != nil {
		t.Fatalf("resuming at offset 0: %v", err)
	}
	if x := r.GetReadExactly(); string(x.Data) != "0123456789" {
		t.Fatalf("resumed read = %v, want every byte from offset 0", x)
	}
	// Without ack, the second read's offset acknowledges the first read's
	// bytes: they are gone.
	peerWrite(t, peer, "abcdefghij")
	e.waitBuffered(t, id, 10)
	ctx, cancel = context.WithCancel(bg(t))
	stream, err = e.c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range []int64{10, 15} {
		req := sreq(&smv1.ReadExactlyRequest{StreamId: id, N: 5, Offset: i64(off)})
		req.CallId = int64(i + 1)
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both reads to run", func() bool { return e.stream(t, id).R.Consumed() == 20 })
	cancel()
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	r = s.do(t, &smv1.ReadExactlyRequest{StreamId: id, N: 10, Offset: i64(10)})
	wantAnswerStatus(t, r, codes.OutOfRange, ReasonOffsetBehind)
}
