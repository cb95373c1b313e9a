package manager

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore"
)

// Service implements smv1.StreamServiceServer over a Manager. Each handler
// converts the request, calls the domain, converts the result and maps the
// error with toStatus.
type Service struct {
	smv1.UnimplementedStreamServiceServer
	m   *Manager
	log *slog.Logger

	sessionBytes atomic.Int64 // request bytes Session calls in flight hold, all sessions
}

// NewService returns the gRPC service for m.
func NewService(m *Manager) *Service { return &Service{m: m, log: slog.Default()} }

// MaxRequestID bounds Open's request_id.
const MaxRequestID = 128

// responseOverhead is room kept in a gRPC message for everything but data.
const responseOverhead = 1 << 10

// maxResult is the most bytes one read response may carry.
func (s *Service) maxResult() int { return s.m.cfg.MaxMessageSize - responseOverhead }

func limitOf(field string, v *int64) (int, error) {
	if v == nil {
		return 0, nil
	}
	if *v <= 0 {
		return 0, invalid(field, "Limit cannot be <= 0")
	}
	if *v > 1<<40 {
		return 0, invalid(field, "limit is too large")
	}
	return int(*v), nil
}

// streamLimit validates a requested reader limit and returns the one to
// use: absent means asyncio's 64 KiB, or less when the daemon's message
// size could not carry a line that long.
func (s *Service) streamLimit(v *int64) (int, error) {
	limit, err := limitOf("limit", v)
	if err != nil {
		return 0, err
	}
	if limit == 0 {
		return min(streamcore.DefaultLimit, s.maxResult()/2), nil
	}
	return limit, checkLimitFits(s, limit)
}

func checkLimitFits(s *Service, limit int) error {
	if limit > s.maxResult()/2 {
		return invalid("limit", "a line of limit bytes must fit in one response: limit <= "+strconv.Itoa(s.maxResult()/2)+" with the daemon's max message size")
	}
	return nil
}

// Open implements StreamService.Open.
func (s *Service) Open(ctx context.Context, req *smv1.OpenRequest) (*smv1.OpenResponse, error) {
	limit, err := s.streamLimit(req.Limit)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := checkShare("share_with", req.ShareWith); err != nil {
		return nil, toStatus(err)
	}
	if len(req.RequestId) > MaxRequestID {
		return nil, toStatus(invalid("request_id", "longer than "+strconv.Itoa(MaxRequestID)+" bytes"))
	}
	opts := &streamcore.DialOptions{Options: streamcore.Options{Limit: limit, Replay: true}}
	if d := req.GetConnectTimeout(); d != nil {
		if d.CheckValid() != nil || d.AsDuration() <= 0 {
			return nil, toStatus(invalid("connect_timeout", "must be a positive duration"))
		}
		opts.ConnectTimeout = d.AsDuration()
	}
	if req.Tls != nil {
		cfg, hs, err := clientTLS(req.Tls, "tls")
		if err != nil {
			return nil, toStatus(err)
		}
		opts.TLS, opts.HandshakeTimeout = cfg, hs
	}
	var st *Stream
	switch a := req.Address.(type) {
	case *smv1.OpenRequest_Tcp:
		if a.Tcp.GetHost() == "" {
			return nil, toStatus(invalid("tcp.host", "host is required"))
		}
		if err := checkHost("tcp.host", a.Tcp.GetHost()); err != nil {
			return nil, toStatus(err)
		}
		if a.Tcp.GetPort() == 0 || a.Tcp.GetPort() > 65535 {
			return nil, toStatus(invalid("tcp.port", "port must be 1..65535"))
		}
		if la := req.GetLocalAddr(); la != nil {
			if la.GetPort() > 65535 {
				return nil, toStatus(invalid("local_addr.port", "port must be 0..65535"))
			}
			if err := checkHost("local_addr.host", la.GetHost()); err != nil {
				return nil, toStatus(err)
			}
			opts.LocalAddr = net.JoinHostPort(la.GetHost(), strconv.Itoa(int(la.GetPort())))
		}
		st, err = s.m.Open(ctx, "tcp", a.Tcp.GetHost(), int(a.Tcp.GetPort()), opts, req.ShareWith, req.RequestId)
	case *smv1.OpenRequest_Unix:
		if err := checkUnixPath("unix.path", a.Unix.GetPath()); err != nil {
			return nil, toStatus(err)
		}
		if err := checkAbstract("unix.path", a.Unix.GetPath(), s.m.cfg.AllowAbstract); err != nil {
			return nil, toStatus(err)
		}
		if req.GetLocalAddr() != nil {
			return nil, toStatus(invalid("local_addr", "only for TCP"))
		}
		if opts.TLS != nil && opts.TLS.ServerName == "" && !opts.TLS.InsecureSkipVerify {
			return nil, toStatus(invalid("tls.server_hostname", "you have to pass server_hostname when using ssl"))
		}
		st, err = s.m.Open(ctx, "unix", a.Unix.GetPath(), 0, opts, req.ShareWith, req.RequestId)
	default:
		return nil, toStatus(invalid("address", "no address: set tcp or unix"))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if ctx.Err() != nil {
		// The caller is gone: nobody would learn the handle. With a
		// request_id its retry may, within OrphanGrace.
		if req.RequestId == "" {
			s.m.Release(st.ID)
		} else {
			s.m.Orphaned(st)
		}
		return nil, toStatus(ctx.Err())
	}
	return &smv1.OpenResponse{
		StreamId: st.ID,
		Peername: addrString(asAddr(st.W.ExtraInfo("peername"))),
		Sockname: addrString(asAddr(st.W.ExtraInfo("sockname"))),
	}, nil
}

func asAddr(v any) net.Addr {
	a, _ := v.(net.Addr)
	return a
}

// OpenPair implements StreamService.OpenPair.
func (s *Service) OpenPair(ctx context.Context, req *smv1.OpenPairRequest) (*smv1.OpenPairResponse, error) {
	limit, err := s.streamLimit(req.Limit)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := checkShare("share_with", req.ShareWith); err != nil {
		return nil, toStatus(err)
	}
	a, b, err := s.m.OpenPair(ctx, limit, req.ShareWith)
	if err != nil {
		return nil, toStatus(err)
	}
	if ctx.Err() != nil {
		// The caller is gone: nobody would learn the handles.
		s.m.Release(a.ID)
		s.m.Release(b.ID)
		return nil, toStatus(ctx.Err())
	}
	return &smv1.OpenPairResponse{FirstStreamId: a.ID, SecondStreamId: b.ID}, nil
}

// StartServer implements StreamService.StartServer.
func (s *Service) StartServer(ctx context.Context, req *smv1.StartServerRequest) (*smv1.StartServerResponse, error) {
	limit, err := s.streamLimit(req.Limit)
	if err != nil {
		return nil, toStatus(err)
	}
	if req.Backlog < 0 {
		return nil, toStatus(invalid("backlog", "must be >= 0"))
	}
	if err := checkShare("share_with", req.ShareWith); err != nil {
		return nil, toStatus(err)
	}
	opts := &streamcore.ServerOptions{
		Options:   streamcore.Options{Limit: limit, Replay: true},
		Backlog:   int(req.Backlog),
		ReusePort: req.ReusePort,
		Deferred:  req.StartServing != nil && !*req.StartServing,
	}
	if req.Tls != nil {
		cfg, hs, err := serverTLS(req.Tls, "tls")
		if err != nil {
			return nil, toStatus(err)
		}
		opts.TLS, opts.HandshakeTimeout = cfg, hs
	}
	var srv *Server
	switch a := req.Address.(type) {
	case *smv1.StartServerRequest_Tcp:
		if a.Tcp.GetPort() > 65535 {
			return nil, toStatus(invalid("tcp.port", "port must be 0..65535"))
		}
		if err := checkHost("tcp.host", a.Tcp.GetHost()); err != nil {
			return nil, toStatus(err)
		}
		srv, err = s.m.StartServer(ctx, "tcp", a.Tcp.GetHost(), int(a.Tcp.GetPort()), opts, req.ShareWith)
	case *smv1.StartServerRequest_Unix:
		if err := checkUnixPath("unix.path", a.Unix.GetPath()); err != nil {
			return nil, toStatus(err)
		}
		if err := checkAbstract("unix.path", a.Unix.GetPath(), s.m.cfg.AllowAbstract); err != nil {
			return nil, toStatus(err)
		}
		if req.ReusePort {
			return nil, toStatus(invalid("reuse_port", "only for TCP"))
		}
		srv, err = s.m.StartServer(ctx, "unix", a.Unix.GetPath(), 0, opts, req.ShareWith)
	default:
		return nil, toStatus(invalid("address", "no address: set tcp or unix"))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if ctx.Err() != nil {
		// The caller is gone: nobody would learn the handle, and servers
		// are never reaped.
		_ = s.m.CloseServer(ctx, srv.ID, false, true)
		return nil, toStatus(ctx.Err())
	}
	return &smv1.StartServerResponse{ServerId: srv.ID, Sockets: addrStrings(srv.Sockets())}, nil
}

func addrStrings(addrs []net.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = addrString(a)
	}
	return out
}

// StartServing implements StreamService.StartServing.
func (s *Service) StartServing(ctx context.Context, req *smv1.StartServingRequest) (*smv1.StartServingResponse, error) {
	srv, err := s.m.server(ctx, req.ServerId)
	if err == nil {
		err = srv.StartServing(ctx)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &smv1.StartServingResponse{}, nil
}

// Accept implements StreamService.Accept.
func (s *Service) Accept(ctx context.Context, req *smv1.AcceptRequest) (*smv1.AcceptResponse, error) {
	srv, err := s.m.server(ctx, req.ServerId)
	if err != nil {
		return nil, toStatus(err)
	}
	wait := ctx
	if d := req.GetTimeout(); d != nil {
		if d.CheckValid() != nil || d.AsDuration() < 0 {
			return nil, toStatus(invalid("timeout", "must be a non-negative duration"))
		}
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, d.AsDuration())
		defer cancel()
	}
	st, err := srv.Accept(wait)
	if err != nil {
		if ctx.Err() == nil && wait.Err() != nil {
			err = acceptTimeoutError{}
		}
		return nil, toStatus(err)
	}
	if ctx.Err() != nil {
		srv.Unaccept(st)
		return nil, toStatus(ctx.Err())
	}
	return &smv1.AcceptResponse{StreamId: st.ID, Peername: addrString(asAddr(st.W.ExtraInfo("peername")))}, nil
}

// Serve implements StreamService.Serve.
func (s *Service) Serve(req *smv1.ServeRequest, stream smv1.StreamService_ServeServer) error {
	ctx := stream.Context()
	srv, err := s.m.server(ctx, req.ServerId)
	if err != nil {
		return toStatus(err)
	}
	srv.serveCalls.Add(1)
	defer srv.serveCalls.Add(-1)
	for {
		st, err := srv.Accept(ctx)
		if err != nil {
			if _, closed := err.(errQueueClosed); closed {
				return nil // the server closed: the stream of connections ends
			}
			return toStatus(err)
		}
		resp := &smv1.ServeResponse{StreamId: st.ID, Peername: addrString(asAddr(st.W.ExtraInfo("peername")))}
		if err := stream.Send(resp); err != nil || ctx.Err() != nil {
			// Not delivered, or the caller left while it was sent: keep the
			// connection for the next claim rather than risk losing it.
			srv.Unaccept(st)
			if err == nil {
				err = ctx.Err()
			}
			return toStatus(err)
		}
	}
}

// CloseServer implements StreamService.CloseServer.
func (s *Service) CloseServer(ctx context.Context, req *smv1.CloseServerRequest) (*smv1.CloseServerResponse, error) {
	if err := s.m.CloseServer(ctx, req.ServerId, req.CloseClients, req.AbortClients); err != nil {
		return nil, toStatus(err)
	}
	return &smv1.CloseServerResponse{}, nil
}

// ListServers implements StreamService.ListServers.
func (s *Service) ListServers(ctx context.Context, req *smv1.ListServersRequest) (*smv1.ListServersResponse, error) {
	b := s.m.Budget()
	resp := &smv1.ListServersResponse{BufferedBytes: b.Used(), MaxBufferedBytes: b.Max()}
	for _, srv := range s.m.Servers(ctx) {
		in, out := srv.Bytes()
		resp.Servers = append(resp.Servers, &smv1.ServerInfo{
			ServerId:   srv.ID,
			Sockets:    addrStrings(srv.Sockets()),
			State:      srv.State(),
			Accepted:   srv.Accepted(),
			Queued:     int64(srv.Queued()),
			Rejected:   srv.Rejected(),
			ServeCalls: srv.ServeCalls(),
			Owner:      srv.Owner,
			SharedWith: srv.Shared,
			BytesIn:    in,
			BytesOut:   out,
			Age:        durationpb.New(time.Since(srv.Created).Round(time.Millisecond)),
		})
	}
	return resp, nil
}

// ListStreams implements StreamService.ListStreams.
func (s *Service) ListStreams(ctx context.Context, req *smv1.ListStreamsRequest) (*smv1.ListStreamsResponse, error) {
	b := s.m.Budget()
	resp := &smv1.ListStreamsResponse{BufferedBytes: b.Used(), MaxBufferedBytes: b.Max()}
	for _, st := range s.m.Streams(ctx) {
		resp.Streams = append(resp.Streams, &smv1.StreamInfo{
			StreamId:        st.ID,
			Kind:            st.Kind(),
			Peername:        addrString(asAddr(st.W.ExtraInfo("peername"))),
			Sockname:        addrString(asAddr(st.W.ExtraInfo("sockname"))),
			State:           st.State(),
			BytesIn:         st.R.Consumed(),
			BytesOut:        st.W.Written(),
			Buffered:        int64(st.R.Buffered()),
			Age:             durationpb.New(time.Since(st.Created).Round(time.Millisecond)),
			ServerId:        st.ServerID,
			Retained:        int64(st.R.Retained()),
			EarliestOffset:  st.R.EarliestOffset(),
			WriteBuffered:   int64(st.W.BufferSize()),
			CallsInProgress: int64(st.active.Load()),
			Attached:        st.attached.Load() != nil,
			RelayPeer:       relayPeer(st.Stream),
			Owner:           st.Owner,
			SharedWith:      st.Shared,
		})
	}
	return resp, nil
}

// offsetOf validates an optional offset field: absent is from, negative
// is invalid.
func offsetOf(field string, v *int64, absent int64) (int64, error) {
	if v == nil {
		return absent, nil
	}
	if *v < 0 {
		return 0, invalid(field, "offset must be >= 0")
	}
	return *v, nil
}

// read runs one read on a stream at the request's offset and applies the
// no-loss rules: a result too large for a response consumes nothing, and
// a result is marked delivered only when its caller is still there, so a read without an offset
// after it gets the same bytes again; a caller with offsets resumes by
// itself. incomplete reports an IncompleteReadError turned into a result;
// next is the inbound offset after the read.
func (s *Service) read(ctx context.Context, id string, offset, ack *int64, op streamcore.ReadOp) (data []byte, next int64, incomplete bool, st *Stream, err error) {
	from, err := offsetOf("offset", offset, streamcore.FromDelivered)
	if err != nil {
		return nil, 0, false, nil, err
	}
	if ack != nil {
		if *ack < 0 {
			return nil, 0, false, nil, invalid("ack", "offset must be >= 0")
		}
		if offset != nil && *ack > *offset {
			return nil, 0, false, nil, invalid("ack", "ack is past offset: only bytes before the read's offset can have been received")
		}
		op.Ack = ack
	}
	st, done, err := s.m.acquire(ctx, id)
	if err != nil {
		return nil, 0, false, nil, err
	}
	defer done()
	if err := st.readable(); err != nil {
		return nil, 0, false, st, err
	}
	op.Max = s.maxResult()
	data, next, err = st.R.Run(ctx, from, op)
	if ie, ok := err.(*streamcore.IncompleteReadError); ok {
		data, incomplete, err = ie.Partial, true, nil
	}
	if ctx.Err() != nil {
		// The caller is gone: not delivered.
		return nil, 0, false, st, ctx.Err()
	}
	if err != nil {
		var ll *streamcore.LineTooLongError
		if errors.As(err, &ll) {
			// LINE_TOO_LONG dropped bytes: the answer says where the
			// stream stands, so those bytes count as delivered.
			st.R.Delivered(next)
		}
		err = &readError{err: err, next: next}
		return nil, 0, false, st, err
	}
	st.R.Delivered(next)
	return data, next, incomplete, st, nil
}

// Read implements StreamService.Read.
func (s *Service) Read(ctx context.Context, req *smv1.ReadRequest) (*smv1.ReadResponse, error) {
	n := int64(-1)
	if req.N != nil {
		n = *req.N
	}
	op := streamcore.ReadOp{Kind: streamcore.OpRead, N: -1}
	if n >= 0 {
		op.N = int(min(n, int64(s.maxResult())))
	}
	data, next, _, st, err := s.read(ctx, req.StreamId, req.Offset, req.Ack, op)
	if err != nil {
		return nil, toStatus(err)
	}
	return &smv1.ReadResponse{Data: data, Eof: st.R.AtEOF(), NextOffset: next}, nil
}

// ReadLine implements StreamService.ReadLine.
func (s *Service) ReadLine(ctx context.Context, req *smv1.ReadLineRequest) (*smv1.ReadLineResponse, error) {
	data, next, _, st, err := s.read(ctx, req.StreamId, req.Offset, req.Ack, streamcore.ReadOp{Kind: streamcore.OpReadLine})
	if err != nil {
		return nil, toStatus(err)
	}
	return &smv1.ReadLineResponse{Data: data, Eof: st.R.AtEOF(), NextOffset: next}, nil
}

// ReadExactly implements StreamService.ReadExactly.
func (s *Service) ReadExactly(ctx context.Context, req *smv1.ReadExactlyRequest) (*smv1.ReadExactlyResponse, error) {
	if req.N < 0 {
		return nil, toStatus(invalid("n", "readexactly size can not be less than zero"))
	}
	if req.N > int64(s.maxResult()) {
		if _, err := s.m.stream(ctx, req.StreamId); err != nil {
			return nil, toStatus(err)
		}
		return nil, toStatus(&streamcore.ResultTooLargeError{Size: int(min(req.N, 1<<40)), Max: s.maxResult()})
	}
	data, next, incomplete, _, err := s.read(ctx, req.StreamId, req.Offset, req.Ack, streamcore.ReadOp{Kind: streamcore.OpReadExactly, N: int(req.N)})
	if err != nil {
		return nil, toStatus(err)
	}
	return &smv1.ReadExactlyResponse{Data: data, Incomplete: incomplete, Expected: req.N, NextOffset: next}, nil
}

// ReadUntil implements StreamService.ReadUntil.
func (s *Service) ReadUntil(ctx context.Context, req *smv1.ReadUntilRequest) (*smv1.ReadUntilResponse, error) {
	var seps [][]byte
	switch {
	case req.Separator != nil && len(req.Separators) > 0:
		return nil, toStatus(invalid("separators", "set separator or separators, not both"))
	case req.Separator != nil:
		if len(req.Separator) == 0 {
			return nil, toStatus(invalid("separator", "Separator should be at least one-byte string"))
		}
		if len(req.Separator) > MaxSeparatorBytes {
			return nil, toStatus(invalid("separator", "longer than "+strconv.Itoa(MaxSeparatorBytes)+" bytes"))
		}
		seps = [][]byte{req.Separator}
	case len(req.Separators) > 0:
		if err := checkSeparators(req.Separators); err != nil {
			return nil, toStatus(err)
		}
		seps = req.Separators
	default:
		seps = [][]byte{{'\n'}}
	}
	data, next, incomplete, _, err := s.read(ctx, req.StreamId, req.Offset, req.Ack, streamcore.ReadOp{Kind: streamcore.OpReadUntil, Separators: seps})
	if err != nil {
		return nil, toStatus(err)
	}
	return &smv1.ReadUntilResponse{Data: data, Incomplete: incomplete, NextOffset: next}, nil
}

// AtEof implements StreamService.AtEof.
func (s *Service) AtEof(ctx context.Context, req *smv1.AtEofRequest) (*smv1.AtEofResponse, error) {
	st, err := s.m.stream(ctx, req.StreamId)
	if err != nil {
		return nil, toStatus(err)
	}
	st.touch()
	return &smv1.AtEofResponse{AtEof: st.R.AtEOF()}, nil
}

// withStream runs f on a stream, marking it in use.
func (s *Service) withStream(ctx context.Context, id string, f func(st *Stream) error) error {
	st, done, err := s.m.acquire(ctx, id)
	if err != nil {
		return toStatus(err)
	}
	defer done()
	return toStatus(f(st))
}

// write runs one write at an optional outbound offset.
func (s *Service) write(ctx context.Context, id string, offset *int64, lines [][]byte) (buffered int, next int64, err error) {
	off, err := offsetOf("offset", offset, -1)
	if err != nil {
		return 0, 0, toStatus(err)
	}
	err = s.withStream(ctx, id, func(st *Stream) error {
		if err := st.relayBusy(); err != nil {
			return err
		}
		var err error
		next, err = st.W.WriteAt(off, lines...)
		buffered = st.W.BufferSize()
		return err
	})
	return buffered, next, err
}

// Write implements StreamService.Write.
func (s *Service) Write(ctx context.Context, req *smv1.WriteRequest) (*smv1.WriteResponse, error) {
	buffered, next, err := s.write(ctx, req.StreamId, req.Offset, [][]byte{req.Data})
	if err != nil {
		return nil, err
	}
	return &smv1.WriteResponse{Buffered: int64(buffered), NextOffset: next}, nil
}

// WriteLines implements StreamService.WriteLines.
func (s *Service) WriteLines(ctx context.Context, req *smv1.WriteLinesRequest) (*smv1.WriteLinesResponse, error) {
	if len(req.Lines) > MaxLines {
		return nil, toStatus(invalid("lines", strconv.Itoa(len(req.Lines))+" lines, more than "+strconv.Itoa(MaxLines)+" in one call"))
	}
	buffered, next, err := s.write(ctx, req.StreamId, req.Offset, req.Lines)
	if err != nil {
		return nil, err
	}
	return &smv1.WriteLinesResponse{Buffered: int64(buffered), NextOffset: next}, nil
}

// Drain implements StreamService.Drain.
func (s *Service) Drain(ctx context.Context, req *smv1.DrainRequest) (*smv1.DrainResponse, error) {
	if err := s.withStream(ctx, req.StreamId, func(st *Stream) error { return st.W.Drain(ctx) }); err != nil {
		return nil, err
	}
	return &smv1.DrainResponse{}, nil
}

// WriteEof implements StreamService.WriteEof.
func (s *Service) WriteEof(ctx context.Context, req *smv1.WriteEofRequest) (*smv1.WriteEofResponse, error) {
	if err := s.withStream(ctx, req.StreamId, func(st *Stream) error {
		if err := st.relayBusy(); err != nil {
			return err
		}
		return st.W.WriteEOF()
	}); err != nil {
		return nil, err
	}
	return &smv1.WriteEofResponse{}, nil
}

// CanWriteEof implements StreamService.CanWriteEof.
func (s *Service) CanWriteEof(ctx context.Context, req *smv1.CanWriteEofRequest) (*smv1.CanWriteEofResponse, error) {
	var ok bool
	if err := s.withStream(ctx, req.StreamId, func(st *Stream) error { ok = st.W.CanWriteEOF(); return nil }); err != nil {
		return nil, err
	}
	return &smv1.CanWriteEofResponse{CanWriteEof: ok}, nil
}

// Close implements StreamService.Close.
func (s *Service) Close(ctx context.Context, req *smv1.CloseRequest) (*smv1.CloseResponse, error) {
	if err := s.withStream(ctx, req.StreamId, func(st *Stream) error { st.W.Close(); return nil }); err != nil {
		return nil, err
	}
	return &smv1.CloseResponse{}, nil
}

// Abort implements StreamService.Abort.
func (s *Service) Abort(ctx context.Context, req *smv1.AbortRequest) (*smv1.AbortResponse, error) {
	if err := s.withStream(ctx, req.StreamId, func(st *Stream) error { st.W.Abort(); return nil }); err != nil {
		return nil, err
	}
	return &smv1.AbortResponse{}, nil
}

// WaitClosed implements StreamService.WaitClosed.
func (s *Service) WaitClosed(ctx context.Context, req *smv1.WaitClosedRequest) (*smv1.WaitClosedResponse, error) {
	if err := s.withStream(ctx, req.StreamId, func(st *Stream) error { return st.W.WaitClosed(ctx) }); err != nil {
		return nil, err
	}
	return &smv1.WaitClosedResponse{}, nil
}

// IsClosing implements StreamService.IsClosing.
func (s *Service) IsClosing(ctx context.Context, req *smv1.IsClosingRequest) (*smv1.IsClosingResponse, error) {
	var closing bool
	if err := s.withStream(ctx, req.StreamId, func(st *Stream) error { closing = st.W.IsClosing(); return nil }); err != nil {
		return nil, err
	}
	return &smv1.IsClosingResponse{IsClosing: closing}, nil
}

// StartTls implements StreamService.StartTls.
func (s *Service) StartTls(ctx context.Context, req *smv1.StartTlsRequest) (*smv1.StartTlsResponse, error) {
	if req.Tls == nil {
		return nil, toStatus(invalid("tls", "TLS options are required"))
	}
	err := s.withStream(ctx, req.StreamId, func(st *Stream) error {
		if err := st.relayBusy(); err != nil {
			return err
		}
		build := clientTLS
		if st.W.IsServerSide() {
			build = serverTLS
		}
		cfg, hs, err := build(req.Tls, "tls")
		if err != nil {
			return err
		}
		if !st.W.IsServerSide() && cfg.ServerName == "" {
			if a, ok := asAddr(st.W.ExtraInfo("peername")).(*net.TCPAddr); ok {
				cfg.ServerName = a.IP.String()
			}
		}
		return st.W.StartTLS(ctx, cfg, hs)
	})
	if err != nil {
		return nil, err
	}
	return &smv1.StartTlsResponse{}, nil
}

// GetExtraInfo implements StreamService.GetExtraInfo.
func (s *Service) GetExtraInfo(ctx context.Context, req *smv1.GetExtraInfoRequest) (*smv1.GetExtraInfoResponse, error) {
	resp := &smv1.GetExtraInfoResponse{}
	err := s.withStream(ctx, req.StreamId, func(st *Stream) error {
		v, err := extraInfo(st.W, req.Name)
		resp.Value = v
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// relayPeer is the stream st is relayed to, if any.
func relayPeer(st *Stream) string {
	if r := st.relay.Load(); r != nil {
		return r.peerOf(st).ID
	}
	return ""
}

// Share implements StreamService.Share.
func (s *Service) Share(ctx context.Context, req *smv1.ShareRequest) (*smv1.ShareResponse, error) {
	var (
		owner  string
		shared []string
		err    error
	)
	switch h := req.Handle.(type) {
	case *smv1.ShareRequest_StreamId:
		owner, shared, err = s.m.Share(ctx, "stream", h.StreamId, req.Add, req.Remove)
	case *smv1.ShareRequest_ServerId:
		owner, shared, err = s.m.Share(ctx, "server", h.ServerId, req.Add, req.Remove)
	default:
		err = invalid("handle", "no handle: set stream_id or server_id")
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &smv1.ShareResponse{Owner: owner, SharedWith: shared}, nil
}
