package manager

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// MaxSessionCalls is the most operations one Session has in flight; past
// it the daemon stops reading the session until one finishes, so HTTP/2
// flow control pushes back on the client.
const MaxSessionCalls = 1024

// MaxSessionBytes bounds the request bytes (write data, mostly) that one
// Session's calls in flight hold: past it the daemon stops reading the
// session until calls finish.
const MaxSessionBytes = 16 << 20

// maxIdleWorkers is how many finished lane workers a session keeps parked
// for the next burst, so that a steady stream of operations reuses
// goroutines (and their grown stacks) instead of starting new ones.
const maxIdleWorkers = 4

// A lane is the queue of one handle's operations of one kind: the reads of
// a stream (read, read_line, read_exactly, read_until, at_eof), everything
// else on a stream, the accepts of a server, or everything else on a
// server. Operations in a lane run one at a time in arrival order; lanes
// run independently, so a read waiting for data never holds up a write or
// a close of the same stream (as in asyncio, where the reading task and the
// writing task are separate), and no handle waits for another.
type lane struct {
	key   laneKey
	queue []*sessionCall
}

type laneKey struct {
	kind byte // 'r' stream reads, 'w' other stream ops, 'a' accepts, 'c' other server ops
	id   string
}

// sessionCall is one operation in flight.
type sessionCall struct {
	id     int64
	req    *smv1.SessionRequest
	ctx    context.Context
	cancel context.CancelFunc
	lane   *lane       // the lane it waits in, when queued
	stop   func() bool // stops the unqueueing of a queued call
	size   int         // request bytes it holds against MaxSessionBytes
}

// session is one Session call.
type session struct {
	svc    *Service
	stream smv1.StreamService_SessionServer
	ctx    context.Context // ends when the client goes away
	log    *slog.Logger

	sendMu sync.Mutex
	broken bool // a Send failed: the client will never see more responses

	mu    sync.Mutex
	lanes map[laneKey]*lane
	calls map[int64]*sessionCall // in flight, for cancel and duplicate call_ids
	// the handles the latest answers created, for a cancel that comes
	// after its call's answer (recentOrder: oldest first)
	recent      map[int64]answered
	recentOrder []int64
	idle        []chan *lane // parked workers

	slots   chan struct{} // one per call in flight
	held    int           // request bytes of the calls in flight (guarded by mu)
	room    chan struct{} // poked when held drops below MaxSessionBytes
	callsWG sync.WaitGroup
	workWG  sync.WaitGroup
	quit    chan struct{} // closed when every call has finished: parked workers exit
}

// Session implements StreamService.Session.
func (s *Service) Session(stream smv1.StreamService_SessionServer) error {
	ss := &session{
		svc:    s,
		stream: stream,
		ctx:    stream.Context(),
		log:    s.log,
		lanes:  make(map[laneKey]*lane),
		calls:  make(map[int64]*sessionCall),
		recent: make(map[int64]answered),
		slots:  make(chan struct{}, MaxSessionCalls),
		room:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
	}
	err := ss.run()
	ss.callsWG.Wait()
	close(ss.quit)
	ss.workWG.Wait()
	return err
}

// run reads requests until the client half-closes (nil) or goes away.
func (ss *session) run() error {
	for {
		// With MaxSessionBytes held by calls in flight, stop reading.
		for ss.full() {
			select {
			case <-ss.room:
			case <-ss.ctx.Done():
				return ss.ctx.Err()
			}
		}
		req, err := ss.stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if cr, ok := req.Op.(*smv1.SessionRequest_Cancel); ok {
			// A cancel holds nothing while it runs: it takes no slot.
			ss.cancel(req.CallId, cr.Cancel.GetCallId())
			continue
		}
		// A slot first: with MaxSessionCalls in flight, stop reading.
		select {
		case ss.slots <- struct{}{}:
		case <-ss.ctx.Done():
			return ss.ctx.Err()
		}
		ss.dispatch(req)
	}
}

// full reports whether the calls in flight hold MaxSessionBytes.
func (ss *session) full() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.held >= MaxSessionBytes
}

// requestBytes is what a request holds while its call is in flight: its
// data, plus a little for the rest.
func requestBytes(req *smv1.SessionRequest) int {
	n := 64
	switch op := req.Op.(type) {
	case *smv1.SessionRequest_Write:
		n += len(op.Write.GetData())
	case *smv1.SessionRequest_WriteLines:
		for _, l := range op.WriteLines.GetLines() {
			n += len(l) + 8
		}
	case *smv1.SessionRequest_StartTls, *smv1.SessionRequest_Open, *smv1.SessionRequest_StartServer:
		n += proto.Size(req)
	}
	return n
}

// cancel answers a cancel request: call id cancels the call target.
func (ss *session) cancel(id, target int64) {
	ss.mu.Lock()
	_, dup := ss.calls[id]
	ss.mu.Unlock()
	var resp *smv1.SessionResponse
	if dup {
		resp = errorResult(toStatus(invalid("call_id", fmt.Sprintf("call_id %d is already in flight in this session", id))))
	} else {
		resp = ss.cancelCall(target)
	}
	resp.CallId = id
	ss.send(resp)
}

// dispatch starts one operation: in the receiving goroutine when it cannot
// block and its lane is idle, otherwise in its lane or on its own.
func (ss *session) dispatch(req *smv1.SessionRequest) {
	c := &sessionCall{id: req.CallId, req: req, ctx: ss.ctx, size: requestBytes(req)}
	ss.mu.Lock()
	_, dup := ss.calls[c.id]
	ss.held += c.size
	if !dup {
		delete(ss.recent, c.id) // a new call with this call_id: a cancel is for it
	}
	ss.mu.Unlock()
	ss.svc.sessionBytes.Add(int64(c.size))
	if dup {
		ss.finish(c, errorResult(toStatus(invalid("call_id", fmt.Sprintf("call_id %d is already in flight in this session", c.id)))))
		return
	}
	key, inline, own := laneOf(req)
	if d := req.GetTimeout(); d != nil {
		if d.CheckValid() != nil || d.AsDuration() <= 0 {
			ss.finish(c, errorResult(toStatus(invalid("timeout", "must be a positive duration"))))
			return
		}
	}
	ss.mu.Lock()
	if inline && req.Timeout == nil {
		if _, busy := ss.lanes[key]; !busy {
			ss.mu.Unlock()
			ss.run1(c)
			return
		}
	}
	if d := req.GetTimeout(); d != nil {
		c.ctx, c.cancel = context.WithTimeout(ss.ctx, d.AsDuration())
	} else {
		c.ctx, c.cancel = context.WithCancel(ss.ctx)
	}
	ss.calls[c.id] = c
	ss.callsWG.Add(1)
	if own {
		ss.mu.Unlock()
		go ss.run1(c)
		return
	}
	// A queued call whose context ends (cancel, timeout) is answered
	// then, not when the calls before it in its lane have finished.
	c.stop = context.AfterFunc(c.ctx, func() { ss.unqueue(c) })
	l := ss.lanes[key]
	if l != nil {
		c.lane = l
		l.queue = append(l.queue, c)
		ss.mu.Unlock()
		return
	}
	l = &lane{key: key, queue: []*sessionCall{c}}
	c.lane = l
	ss.lanes[key] = l
	if n := len(ss.idle); n > 0 {
		w := ss.idle[n-1]
		ss.idle = ss.idle[:n-1]
		ss.mu.Unlock()
		w <- l
		return
	}
	ss.mu.Unlock()
	ss.workWG.Add(1)
	go ss.worker(l)
}

// worker runs lanes: the one it was started with, then whichever it is
// handed while parked.
func (ss *session) worker(l *lane) {
	defer ss.workWG.Done()
	var park chan *lane
	for {
		ss.mu.Lock()
		for len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			ss.mu.Unlock()
			ss.run1(c)
			ss.mu.Lock()
		}
		delete(ss.lanes, l.key)
		if len(ss.idle) >= maxIdleWorkers {
			ss.mu.Unlock()
			return
		}
		if park == nil {
			park = make(chan *lane, 1)
		}
		ss.idle = append(ss.idle, park)
		ss.mu.Unlock()
		select {
		case l = <-park:
		case <-ss.quit:
			return
		}
	}
}

// run1 runs one call and sends its response. A call whose context ended
// before it started is not run.
func (ss *session) run1(c *sessionCall) {
	if err := c.ctx.Err(); err != nil {
		ss.finish(c, errorResult(toStatus(err)))
		return
	}
	ss.finish(c, ss.exec(c))
}

// unqueue answers a queued call whose context ended before it started.
func (ss *session) unqueue(c *sessionCall) {
	ss.mu.Lock()
	i := slices.Index(c.lane.queue, c)
	if i < 0 {
		ss.mu.Unlock()
		return // started already
	}
	c.lane.queue = slices.Delete(c.lane.queue, i, i+1)
	ss.mu.Unlock()
	ss.finish(c, errorResult(toStatus(c.ctx.Err())))
}

// finish sends a call's response and releases what the call held.
func (ss *session) finish(c *sessionCall, resp *smv1.SessionResponse) {
	resp.CallId = c.id
	if ss.log.Enabled(ss.ctx, slog.LevelDebug) {
		ss.logCall(c, resp)
	}
	if c.stop != nil {
		c.stop()
	}
	if c.cancel != nil {
		// Before the answer goes out: a client may reuse the call_id as
		// soon as it has the answer.
		ss.mu.Lock()
		if ss.calls[c.id] == c {
			delete(ss.calls, c.id)
		}
		ss.mu.Unlock()
	}
	if a, ok := createdBy(resp); ok {
		ss.remember(c.id, a)
	}
	ss.send(resp)
	ss.mu.Lock()
	wasFull := ss.held >= MaxSessionBytes
	ss.held -= c.size
	ss.svc.sessionBytes.Add(-int64(c.size))
	poke := wasFull && ss.held < MaxSessionBytes
	ss.mu.Unlock()
	if poke {
		select {
		case ss.room <- struct{}{}:
		default:
		}
	}
	if c.cancel != nil {
		c.cancel()
		ss.callsWG.Done()
	}
	<-ss.slots
}

// opField and resultField are the oneofs that name a session call's
// operation and its answer.
var (
	opField     = (&smv1.SessionRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	resultField = (&smv1.SessionResponse{}).ProtoReflect().Descriptor().Oneofs().ByName("result")
)

// logCall logs one finished session call at debug, as the call log logs
// a unary call.
func (ss *session) logCall(c *sessionCall, resp *smv1.SessionResponse) {
	op := "none"
	if f := c.req.ProtoReflect().WhichOneof(opField); f != nil {
		op = string(f.Name())
	}
	code := "OK"
	if e := resp.GetError(); e != nil {
		code = codes.Code(e.Code).String()
	} else if resp.ProtoReflect().WhichOneof(resultField) == nil {
		code = "none"
	}
	ss.log.DebugContext(ss.ctx, "finished session call", "grpc.method", "Session", "session.op", op, "session.call_id", c.id, "grpc.code", code)
}

func (ss *session) send(resp *smv1.SessionResponse) {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	if ss.broken {
		return
	}
	if err := ss.stream.Send(resp); err != nil {
		// The client is gone or the stream broke: the calls still in
		// flight end with the session's context. A client with offsets
		// resumes from where its responses stopped.
		ss.broken = true
	}
}

// maxRecent is how many answers that created handles a session remembers
// for a late cancel.
const maxRecent = 256

// answered is what an answer created: streams (open, open_pair), a server
// (start_server), or a stream claimed from its server (accept).
type answered struct {
	streams  []string
	server   string
	accepted bool
}

// createdBy returns the handles a successful answer created, if any.
func createdBy(resp *smv1.SessionResponse) (answered, bool) {
	switch r := resp.Result.(type) {
	case *smv1.SessionResponse_Open:
		return answered{streams: []string{r.Open.StreamId}}, true
	case *smv1.SessionResponse_OpenPair:
		return answered{streams: []string{r.OpenPair.FirstStreamId, r.OpenPair.SecondStreamId}}, true
	case *smv1.SessionResponse_StartServer:
		return answered{server: r.StartServer.ServerId}, true
	case *smv1.SessionResponse_Accept:
		return answered{streams: []string{r.Accept.StreamId}, accepted: true}, true
	}
	return answered{}, false
}

// remember keeps what an answer created, for a cancel that crosses it.
func (ss *session) remember(id int64, a answered) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, dup := ss.recent[id]; !dup {
		ss.recentOrder = append(ss.recentOrder, id)
	}
	ss.recent[id] = a
	for len(ss.recentOrder) > maxRecent {
		delete(ss.recent, ss.recentOrder[0])
		ss.recentOrder = ss.recentOrder[1:]
	}
}

// cancelCall cancels the call in flight with call_id id. A cancel that
// crossed its call's answer undoes what the answer created, as long as no
// call has used it since: the streams of open and open_pair are released,
// the server of start_server closed, the stream of accept goes back to its
// server's queue; the answer then counts as cancelled.
func (ss *session) cancelCall(id int64) *smv1.SessionResponse {
	ss.mu.Lock()
	c := ss.calls[id]
	a, late := ss.recent[id]
	if c == nil && late {
		delete(ss.recent, id)
	}
	ss.mu.Unlock()
	cancelled := c != nil
	switch {
	case c != nil:
		c.cancel()
	case late:
		m := ss.svc.m
		for _, sid := range a.streams {
			if a.accepted {
				cancelled = m.UnacceptUnclaimed(ss.ctx, sid) || cancelled
			} else {
				cancelled = m.ReleaseUnclaimed(ss.ctx, sid) || cancelled
			}
		}
		if a.server != "" {
			cancelled = m.CloseUnclaimedServer(ss.ctx, a.server)
		}
	}
	return &smv1.SessionResponse{Result: &smv1.SessionResponse_Cancel{Cancel: &smv1.CancelCallResponse{Cancelled: cancelled}}}
}

// laneOf says where an operation runs: in the lane key; inline when it
// never blocks (it may then run in the receiving goroutine if its lane is
// idle); own for operations that start or join handles, which run on their
// own.
func laneOf(req *smv1.SessionRequest) (key laneKey, inline, own bool) {
	switch op := req.Op.(type) {
	case *smv1.SessionRequest_Read:
		return laneKey{'r', op.Read.GetStreamId()}, false, false
	case *smv1.SessionRequest_ReadLine:
		return laneKey{'r', op.ReadLine.GetStreamId()}, false, false
	case *smv1.SessionRequest_ReadExactly:
		return laneKey{'r', op.ReadExactly.GetStreamId()}, false, false
	case *smv1.SessionRequest_ReadUntil:
		return laneKey{'r', op.ReadUntil.GetStreamId()}, false, false
	case *smv1.SessionRequest_AtEof:
		return laneKey{'r', op.AtEof.GetStreamId()}, true, false
	case *smv1.SessionRequest_Write:
		return laneKey{'w', op.Write.GetStreamId()}, true, false
	case *smv1.SessionRequest_WriteLines:
		return laneKey{'w', op.WriteLines.GetStreamId()}, true, false
	case *smv1.SessionRequest_Drain:
		return laneKey{'w', op.Drain.GetStreamId()}, false, false
	case *smv1.SessionRequest_WriteEof:
		return laneKey{'w', op.WriteEof.GetStreamId()}, true, false
	case *smv1.SessionRequest_CanWriteEof:
		return laneKey{'w', op.CanWriteEof.GetStreamId()}, true, false
	case *smv1.SessionRequest_Close:
		return laneKey{'w', op.Close.GetStreamId()}, true, false
	case *smv1.SessionRequest_Abort:
		return laneKey{'w', op.Abort.GetStreamId()}, true, false
	case *smv1.SessionRequest_IsClosing:
		return laneKey{'w', op.IsClosing.GetStreamId()}, true, false
	case *smv1.SessionRequest_StartTls:
		return laneKey{'w', op.StartTls.GetStreamId()}, false, false
	case *smv1.SessionRequest_GetExtraInfo:
		return laneKey{'w', op.GetExtraInfo.GetStreamId()}, true, false
	case *smv1.SessionRequest_SetSockOpt:
		return laneKey{'w', op.SetSockOpt.GetStreamId()}, true, false
	case *smv1.SessionRequest_GetSockOpt:
		return laneKey{'w', op.GetSockOpt.GetStreamId()}, true, false
	case *smv1.SessionRequest_Accept:
		return laneKey{'a', op.Accept.GetServerId()}, false, false
	case *smv1.SessionRequest_CloseServer:
		return laneKey{'c', op.CloseServer.GetServerId()}, false, false
	case *smv1.SessionRequest_StartServing:
		return laneKey{'c', op.StartServing.GetServerId()}, false, false
	case *smv1.SessionRequest_WaitClosed:
		// It only watches: it must not hold up the close or abort after it.
		return laneKey{}, false, true
	}
	// open, open_pair, start_server, relay, and requests with no operation.
	return laneKey{}, false, true
}

// exec runs one operation through the unary handler of the same name, so
// that results and errors are exactly the unary call's.
func (ss *session) exec(c *sessionCall) (resp *smv1.SessionResponse) {
	defer func() {
		if p := recover(); p != nil {
			ss.log.Error("panic in a session operation", "panic", p, "stack", string(debug.Stack()))
			resp = errorResult(status.Error(codes.Internal, "internal error"))
		}
	}()
	s, ctx := ss.svc, c.ctx
	var err error
	resp = &smv1.SessionResponse{}
	switch op := c.req.Op.(type) {
	case *smv1.SessionRequest_Open:
		var r *smv1.OpenResponse
		if r, err = s.Open(ctx, op.Open); err == nil {
			resp.Result = &smv1.SessionResponse_Open{Open: r}
		}
	case *smv1.SessionRequest_OpenPair:
		var r *smv1.OpenPairResponse
		if r, err = s.OpenPair(ctx, op.OpenPair); err == nil {
			resp.Result = &smv1.SessionResponse_OpenPair{OpenPair: r}
		}
	case *smv1.SessionRequest_StartServer:
		var r *smv1.StartServerResponse
		if r, err = s.StartServer(ctx, op.StartServer); err == nil {
			resp.Result = &smv1.SessionResponse_StartServer{StartServer: r}
		}
	case *smv1.SessionRequest_StartServing:
		var r *smv1.StartServingResponse
		if r, err = s.StartServing(ctx, op.StartServing); err == nil {
			resp.Result = &smv1.SessionResponse_StartServing{StartServing: r}
		}
	case *smv1.SessionRequest_Accept:
		var r *smv1.AcceptResponse
		if r, err = s.Accept(ctx, op.Accept); err == nil {
			resp.Result = &smv1.SessionResponse_Accept{Accept: r}
		}
	case *smv1.SessionRequest_CloseServer:
		var r *smv1.CloseServerResponse
		if r, err = s.CloseServer(ctx, op.CloseServer); err == nil {
			resp.Result = &smv1.SessionResponse_CloseServer{CloseServer: r}
		}
	case *smv1.SessionRequest_Read:
		var r *smv1.ReadResponse
		if r, err = s.Read(ctx, op.Read); err == nil {
			resp.Result = &smv1.SessionResponse_Read{Read: r}
		}
	case *smv1.SessionRequest_ReadLine:
		var r *smv1.ReadLineResponse
		if r, err = s.ReadLine(ctx, op.ReadLine); err == nil {
			resp.Result = &smv1.SessionResponse_ReadLine{ReadLine: r}
		}
	case *smv1.SessionRequest_ReadExactly:
		var r *smv1.ReadExactlyResponse
		if r, err = s.ReadExactly(ctx, op.ReadExactly); err == nil {
			resp.Result = &smv1.SessionResponse_ReadExactly{ReadExactly: r}
		}
	case *smv1.SessionRequest_ReadUntil:
		var r *smv1.ReadUntilResponse
		if r, err = s.ReadUntil(ctx, op.ReadUntil); err == nil {
			resp.Result = &smv1.SessionResponse_ReadUntil{ReadUntil: r}
		}
	case *smv1.SessionRequest_AtEof:
		var r *smv1.AtEofResponse
		if r, err = s.AtEof(ctx, op.AtEof); err == nil {
			resp.Result = &smv1.SessionResponse_AtEof{AtEof: r}
		}
	case *smv1.SessionRequest_Write:
		var r *smv1.WriteResponse
		if r, err = s.Write(ctx, op.Write); err == nil {
			resp.Result = &smv1.SessionResponse_Write{Write: r}
		}
	case *smv1.SessionRequest_WriteLines:
		var r *smv1.WriteLinesResponse
		if r, err = s.WriteLines(ctx, op.WriteLines); err == nil {
			resp.Result = &smv1.SessionResponse_WriteLines{WriteLines: r}
		}
	case *smv1.SessionRequest_Drain:
		var r *smv1.DrainResponse
		if r, err = s.Drain(ctx, op.Drain); err == nil {
			resp.Result = &smv1.SessionResponse_Drain{Drain: r}
		}
	case *smv1.SessionRequest_WriteEof:
		var r *smv1.WriteEofResponse
		if r, err = s.WriteEof(ctx, op.WriteEof); err == nil {
			resp.Result = &smv1.SessionResponse_WriteEof{WriteEof: r}
		}
	case *smv1.SessionRequest_CanWriteEof:
		var r *smv1.CanWriteEofResponse
		if r, err = s.CanWriteEof(ctx, op.CanWriteEof); err == nil {
			resp.Result = &smv1.SessionResponse_CanWriteEof{CanWriteEof: r}
		}
	case *smv1.SessionRequest_Close:
		var r *smv1.CloseResponse
		if r, err = s.Close(ctx, op.Close); err == nil {
			resp.Result = &smv1.SessionResponse_Close{Close: r}
		}
	case *smv1.SessionRequest_Abort:
		var r *smv1.AbortResponse
		if r, err = s.Abort(ctx, op.Abort); err == nil {
			resp.Result = &smv1.SessionResponse_Abort{Abort: r}
		}
	case *smv1.SessionRequest_WaitClosed:
		var r *smv1.WaitClosedResponse
		if r, err = s.WaitClosed(ctx, op.WaitClosed); err == nil {
			resp.Result = &smv1.SessionResponse_WaitClosed{WaitClosed: r}
		}
	case *smv1.SessionRequest_IsClosing:
		var r *smv1.IsClosingResponse
		if r, err = s.IsClosing(ctx, op.IsClosing); err == nil {
			resp.Result = &smv1.SessionResponse_IsClosing{IsClosing: r}
		}
	case *smv1.SessionRequest_StartTls:
		var r *smv1.StartTlsResponse
		if r, err = s.StartTls(ctx, op.StartTls); err == nil {
			resp.Result = &smv1.SessionResponse_StartTls{StartTls: r}
		}
	case *smv1.SessionRequest_GetExtraInfo:
		var r *smv1.GetExtraInfoResponse
		if r, err = s.GetExtraInfo(ctx, op.GetExtraInfo); err == nil {
			resp.Result = &smv1.SessionResponse_GetExtraInfo{GetExtraInfo: r}
		}
	case *smv1.SessionRequest_SetSockOpt:
		var r *smv1.SetSockOptResponse
		if r, err = s.SetSockOpt(ctx, op.SetSockOpt); err == nil {
			resp.Result = &smv1.SessionResponse_SetSockOpt{SetSockOpt: r}
		}
	case *smv1.SessionRequest_GetSockOpt:
		var r *smv1.GetSockOptResponse
		if r, err = s.GetSockOpt(ctx, op.GetSockOpt); err == nil {
			resp.Result = &smv1.SessionResponse_GetSockOpt{GetSockOpt: r}
		}
	case *smv1.SessionRequest_Share:
		var r *smv1.ShareResponse
		if r, err = s.Share(ctx, op.Share); err == nil {
			resp.Result = &smv1.SessionResponse_Share{Share: r}
		}
	case *smv1.SessionRequest_Relay:
		var r *smv1.RelayResponse
		if r, err = s.Relay(ctx, op.Relay); err == nil {
			resp.Result = &smv1.SessionResponse_Relay{Relay: r}
		}
	default:
		err = toStatus(invalid("op", "no operation set: name one (open, read, write, ...)"))
	}
	if err != nil {
		return errorResult(err)
	}
	return resp
}

// errorResult carries a handler's status error in a SessionResponse.
func errorResult(err error) *smv1.SessionResponse {
	p := status.Convert(err).Proto()
	return &smv1.SessionResponse{Result: &smv1.SessionResponse_Error{Error: &smv1.Status{
		Code: p.Code, Message: p.Message, Details: p.Details,
	}}}
}
