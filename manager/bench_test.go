package manager_test

// Echo benchmarks, run together so the numbers compare in one run:
//
//	DirectTCP  a Go client and a TCP echo peer: the floor.
//	BareGRPC   one unary gRPC call carrying the payload both ways, over the
//	           same kind of Unix socket the daemon uses: the cost of gRPC.
//	Daemon     Write + ReadExactly through the StreamService to the same
//	           TCP echo peer: what a remote client of streammgrd pays.
//
// go test -run '^$' -bench Echo -benchmem ./manager

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/manager"
)

const benchPayload = 4 << 10

// echoPeer starts a TCP echo server and returns its address.
func echoPeer(b *testing.B) *net.TCPAddr {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr)
}

// grpcOnUnix serves srv on a fresh Unix socket and returns a client conn.
func grpcOnUnix(b *testing.B, srv *grpc.Server) *grpc.ClientConn {
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "b.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	cc, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close(); srv.Stop(); os.RemoveAll(dir) })
	return cc
}

func BenchmarkEchoDirectTCP(b *testing.B) {
	c, err := net.Dial("tcp", echoPeer(b).String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, benchPayload)
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

type echoService struct {
	testpb.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: req.Payload}, nil
}

func BenchmarkEchoBareGRPC(b *testing.B) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, echoService{})
	client := testpb.NewTestServiceClient(grpcOnUnix(b, srv))
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, benchPayload)}}
	ctx := context.Background()
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.UnaryCall(ctx, req)
		if err != nil || len(resp.GetPayload().GetBody()) != benchPayload {
			b.Fatalf("echo: %v", err)
		}
	}
}

func BenchmarkEchoDaemon(b *testing.B) {
	m := manager.New(manager.Config{})
	defer m.Close()
	srv := grpc.NewServer()
	smv1.RegisterStreamServiceServer(srv, manager.NewService(m))
	client := smv1.NewStreamServiceClient(grpcOnUnix(b, srv))
	ctx := context.Background()
	peer := echoPeer(b)
	open, err := client.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(peer.Port)}}})
	if err != nil {
		b.Fatal(err)
	}
	id := open.StreamId
	data := make([]byte, benchPayload)
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(ctx, &smv1.WriteRequest{StreamId: id, Data: data}); err != nil {
			b.Fatal(err)
		}
		resp, err := client.ReadExactly(ctx, &smv1.ReadExactlyRequest{StreamId: id, N: benchPayload})
		if err != nil || len(resp.Data) != benchPayload {
			b.Fatalf("read: %v", err)
		}
	}
	b.StopTimer()
	_, _ = client.Abort(ctx, &smv1.AbortRequest{StreamId: id})
}

// BenchmarkOpenClose opens and closes streams through the service, 32
// callers at once, while live handles hold the registry: the rate must not
// depend on how many handles there are. The registry is kept nearly full
// (MaxStreams = live + 1000), so once the closed handles of earlier
// iterations fill it every Open also evicts one.
//
//	go test -run '^$' -bench OpenClose -benchmem ./manager
func BenchmarkOpenClose(b *testing.B) {
	for _, live := range []int{0, 5000, 15000} {
		b.Run("live="+strconv.Itoa(live), func(b *testing.B) {
			m := manager.New(manager.Config{MaxStreams: live + 1000})
			defer m.Close()
			srv := grpc.NewServer()
			smv1.RegisterStreamServiceServer(srv, manager.NewService(m))
			client := smv1.NewStreamServiceClient(grpcOnUnix(b, srv))
			ctx := context.Background()
			for range live / 2 {
				if _, err := client.OpenPair(ctx, &smv1.OpenPairRequest{}); err != nil {
					b.Fatal(err)
				}
			}
			peer := echoPeer(b)
			req := &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(peer.Port)}}}
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					open, err := client.Open(ctx, req)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := client.Close(ctx, &smv1.CloseRequest{StreamId: open.StreamId}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkEchoBareGRPCBidi is the ping-pong baseline for Session: one
// message each way per round trip on a bare gRPC bidi stream.
func BenchmarkEchoBareGRPCBidi(b *testing.B) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, echoService{})
	client := testpb.NewTestServiceClient(grpcOnUnix(b, srv))
	s, err := client.FullDuplexCall(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	req := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, benchPayload)}}
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(req); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
	}
	_ = s.CloseSend()
}

func (echoService) FullDuplexCall(s testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: req.Payload}); err != nil {
			return err
		}
	}
}

// BenchmarkEchoSession is a write and a read pipelined on one Session per
// round trip, through the daemon to a TCP echo peer.
func BenchmarkEchoSession(b *testing.B) {
	m := manager.New(manager.Config{})
	defer m.Close()
	srv := grpc.NewServer()
	smv1.RegisterStreamServiceServer(srv, manager.NewService(m))
	client := smv1.NewStreamServiceClient(grpcOnUnix(b, srv))
	ctx := context.Background()
	peer := echoPeer(b)
	open, err := client.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(peer.Port)}}})
	if err != nil {
		b.Fatal(err)
	}
	id := open.StreamId
	s, err := client.Session(ctx)
	if err != nil {
		b.Fatal(err)
	}
	write := &smv1.SessionRequest{CallId: 1, Op: &smv1.SessionRequest_Write{Write: &smv1.WriteRequest{StreamId: id, Data: make([]byte, benchPayload)}}}
	read := &smv1.SessionRequest{CallId: 2, Op: &smv1.SessionRequest_ReadExactly{ReadExactly: &smv1.ReadExactlyRequest{StreamId: id, N: benchPayload}}}
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(write); err != nil {
			b.Fatal(err)
		}
		if err := s.Send(read); err != nil {
			b.Fatal(err)
		}
		for range 2 {
			resp, err := s.Recv()
			if err != nil {
				b.Fatal(err)
			}
			if e := resp.GetError(); e != nil {
				b.Fatalf("call %d: %v", resp.CallId, e)
			}
		}
	}
	b.StopTimer()
	_ = s.CloseSend()
	_, _ = client.Abort(ctx, &smv1.AbortRequest{StreamId: id})
}
