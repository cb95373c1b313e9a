package manager

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	gmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/manager/identity"
	"github.com/streammgr/streammgr/manager/policy"
)

// identityEnv serves the StreamService with each call's identity taken
// from its "x-identity" metadata (and "x-admin"), as the daemon's
// authentication would set it.
type identityEnv struct {
	m      *Manager
	target string
}

func fromMetadata(ctx context.Context) context.Context {
	md, _ := gmd.FromIncomingContext(ctx)
	id := identity.Identity{PID: -1, UID: -1, GID: -1, Via: "token"}
	if v := md.Get("x-identity"); len(v) > 0 {
		id.Name = v[0]
	}
	id.Admin = len(md.Get("x-admin")) > 0
	return identity.NewContext(ctx, id)
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identityStream) Context() context.Context { return s.ctx }

func newIdentityEnv(t *testing.T, cfg Config) *identityEnv {
	t.Helper()
	m := New(cfg)
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "g.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(fromMetadata(ctx), req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, identityStream{ss, fromMetadata(ss.Context())})
		}))
	smv1.RegisterStreamServiceServer(srv, NewService(m))
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		<-served
		m.Close()
		os.RemoveAll(dir)
	})
	return &identityEnv{m: m, target: "unix://" + sock}
}

// as is a client whose calls run as name (an admin with admin).
func (e *identityEnv) as(t *testing.T, name string, admin bool) smv1.StreamServiceClient {
	t.Helper()
	md := gmd.Pairs("x-identity", name)
	if admin {
		md.Set("x-admin", "1")
	}
	add := func(ctx context.Context) context.Context { return gmd.NewOutgoingContext(ctx, md) }
	cc, err := grpc.NewClient(e.target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return inv(add(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, s grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return s(add(ctx), desc, cc, method, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return smv1.NewStreamServiceClient(cc)
}

func wantReason(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	if c, r := codeReason(err); c != code || r != reason {
		t.Fatalf("%s: got %v, want %v %s", what, err, code, reason)
	}
}

func codeReason(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

// TestOwnershipStreamingCalls: Attach, Session, Relay and Serve see another
// identity's handles as unknown; an admin's Session may use them.
func TestOwnershipStreamingCalls(t *testing.T) {
	e := newIdentityEnv(t, Config{})
	a, b, admin := e.as(t, "alice", false), e.as(t, "bob", false), e.as(t, "root", true)
	ctx := bg(t)
	pa, err := a.OpenPair(ctx, &smv1.OpenPairRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.OpenPair(ctx, &smv1.OpenPairRequest{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := a.StartServer(ctx, &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}

	at, err := b.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := at.Send(&smv1.AttachRequest{StreamId: pa.FirstStreamId}); err != nil {
		t.Fatal(err)
	}
	_, err = at.Recv()
	wantReason(t, "bob's Attach to alice's stream", err, codes.NotFound, ReasonStreamNotFound)

	_, err = b.Relay(ctx, &smv1.RelayRequest{FirstStreamId: pb.FirstStreamId, SecondStreamId: pa.FirstStreamId})
	wantReason(t, "bob's Relay with alice's stream", err, codes.NotFound, ReasonStreamNotFound)

	sv, err := b.Serve(ctx, &smv1.ServeRequest{ServerId: srv.ServerId})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sv.Recv()
	wantReason(t, "bob's Serve on alice's server", err, codes.NotFound, ReasonServerNotFound)

	session := func(c smv1.StreamServiceClient, req *smv1.SessionRequest) *smv1.SessionResponse {
		t.Helper()
		s, err := c.Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		_ = s.CloseSend()
		return r
	}
	r := session(b, &smv1.SessionRequest{CallId: 1, Op: &smv1.SessionRequest_Write{Write: &smv1.WriteRequest{StreamId: pa.FirstStreamId, Data: []byte("x")}}})
	if r.GetError().GetCode() != int32(codes.NotFound) {
		t.Fatalf("bob's Session write to alice's stream: %v", r)
	}
	r = session(admin, &smv1.SessionRequest{CallId: 1, Op: &smv1.SessionRequest_Write{Write: &smv1.WriteRequest{StreamId: pa.FirstStreamId, Data: []byte("x")}}})
	if r.GetWrite() == nil {
		t.Fatalf("admin's Session write: %v", r)
	}
	got, err := a.Read(ctx, &smv1.ReadRequest{StreamId: pa.SecondStreamId, N: i64(1)})
	if err != nil || string(got.Data) != "x" {
		t.Fatalf("alice reads %v, %v; want the admin's x", got, err)
	}
	// Relay of two streams one identity may use works.
	if _, err := a.Share(ctx, &smv1.ShareRequest{Handle: &smv1.ShareRequest_StreamId{StreamId: pa.FirstStreamId}, Add: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Abort(ctx, &smv1.AbortRequest{StreamId: pa.FirstStreamId}); err != nil {
		t.Fatalf("bob aborts the stream alice shared: %v", err)
	}
}

// TestShareBounds: Share and share_with refuse empty, oversized and too
// many names; the list stays sorted, without duplicates or the owner.
func TestShareBounds(t *testing.T) {
	e := newIdentityEnv(t, Config{})
	a := e.as(t, "alice", false)
	ctx := bg(t)
	p, err := a.OpenPair(ctx, &smv1.OpenPairRequest{ShareWith: []string{"carol", "bob", "bob", "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	handle := &smv1.ShareRequest_StreamId{StreamId: p.FirstStreamId}
	r, err := a.Share(ctx, &smv1.ShareRequest{Handle: handle})
	if err != nil || r.Owner != "alice" || strings.Join(r.SharedWith, ",") != "bob,carol" {
		t.Fatalf("Share = %v, %v; want owner alice, shared bob,carol", r, err)
	}
	many := make([]string, MaxShared+1)
	for i := range many {
		many[i] = "id" + string(rune('a'+i))
	}
	for _, tc := range []struct {
		what string
		call func() error
	}{
		{"empty name", func() error {
			_, err := a.Share(ctx, &smv1.ShareRequest{Handle: handle, Add: []string{""}})
			return err
		}},
		{"long name", func() error {
			_, err := a.Share(ctx, &smv1.ShareRequest{Handle: handle, Add: []string{strings.Repeat("n", maxIdentityName+1)}})
			return err
		}},
		{"too many at once", func() error {
			_, err := a.Share(ctx, &smv1.ShareRequest{Handle: handle, Add: many})
			return err
		}},
		{"too many in all", func() error {
			_, err := a.Share(ctx, &smv1.ShareRequest{Handle: handle, Add: many[:MaxShared-1]})
			return err
		}},
		{"share_with", func() error {
			_, err := a.OpenPair(ctx, &smv1.OpenPairRequest{ShareWith: many})
			return err
		}},
	} {
		wantReason(t, tc.what, tc.call(), codes.InvalidArgument, ReasonInvalidArgument)
	}
	r, err = a.Share(ctx, &smv1.ShareRequest{Handle: handle, Remove: []string{"carol"}})
	if err != nil || strings.Join(r.SharedWith, ",") != "bob" {
		t.Fatalf("after remove: %v, %v", r, err)
	}
}

// TestIdentityMemoryQuota: an identity whose max_buffered_bytes is used up
// gets MEMORY_BUDGET for its writes, while another identity's writes of the
// same size go through; reading gives the room back.
func TestIdentityMemoryQuota(t *testing.T) {
	pol, err := policy.Parse([]byte("[identity.small]\nmax_buffered_bytes = \"1MiB\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newIdentityEnv(t, Config{Policy: pol, MaxWriteBuffer: 4 << 20})
	small, big := e.as(t, "small", false), e.as(t, "big", false)
	ctx := bg(t)
	fill := func(c smv1.StreamServiceClient) (string, string, error) {
		p, err := c.OpenPair(ctx, &smv1.OpenPairRequest{})
		if err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 256<<10)
		for range 12 { // 3 MiB: past small's quota, within the daemon's
			if _, err := c.Write(ctx, &smv1.WriteRequest{StreamId: p.FirstStreamId, Data: chunk}); err != nil {
				return p.FirstStreamId, p.SecondStreamId, err
			}
		}
		return p.FirstStreamId, p.SecondStreamId, nil
	}
	_, rs, err := fill(small)
	wantReason(t, "small's writes past its quota", err, codes.ResourceExhausted, ReasonMemoryBudget)
	if _, _, err := fill(big); err != nil {
		t.Fatalf("big's writes: %v", err)
	}
	// Reading frees small's room: its next write goes through.
	var got int
	for got < 512<<10 {
		r, err := small.Read(ctx, &smv1.ReadRequest{StreamId: rs, N: i64(1 << 20)})
		if err != nil {
			t.Fatal(err)
		}
		got += len(r.Data)
	}
	waitFor(t, "small's budget to have room", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		o := e.m.owners["small"]
		return o != nil && !o.budget.Tight()
	})
}
