package manager

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"

	"github.com/streammgr/streammgr/streamcore/streamtest"
)

// panicky is a service whose handler panics with a value that must never
// reach the client.
type panicky struct {
	testpb.UnimplementedTestServiceServer
}

const secret = "secret-panic-value-do-not-send"

func (panicky) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	panic(secret)
}

// The daemon's interceptors: a panic becomes a bare INTERNAL (logged, never
// sent), StreamService calls are logged at debug, health checks are not.
func TestServerInterceptors(t *testing.T) {
	out := interceptedLog(t, slog.LevelDebug)
	for _, want := range []string{"panic in handler", secret, "grpc.method=ListStreams", "level=DEBUG"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "grpc.health.v1") {
		t.Errorf("health checks are logged:\n%s", out)
	}
}

// At the default level (info) calls are not logged; a panic still is.
func TestServerInterceptorsInfo(t *testing.T) {
	out := interceptedLog(t, slog.LevelInfo)
	if !strings.Contains(out, "panic in handler") || !strings.Contains(out, secret) {
		t.Errorf("the panic is not logged:\n%s", out)
	}
	if strings.Contains(out, "grpc.method=ListStreams") {
		t.Errorf("a call is logged at info:\n%s", out)
	}
}

// interceptedLog makes a panicking call, a health check and a ListStreams
// through the daemon's server options with a logger at level, and returns
// the log.
func interceptedLog(t *testing.T, level slog.Level) string {
	var logs streamtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))
	srv := grpc.NewServer(serverOptions(Config{}.withDefaults(), log)...)
	testpb.RegisterTestServiceServer(srv, panicky{})
	m := New(Config{})
	defer m.Close()
	smv1.RegisterStreamServiceServer(srv, NewService(m))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := context.Background()

	_, err = testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{})
	st := status.Convert(err)
	if st.Code() != codes.Internal || st.Message() != "internal error" || len(st.Details()) != 0 {
		t.Fatalf("panic answered %v %q %v, want a bare INTERNAL", st.Code(), st.Message(), st.Details())
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}
	if _, err := smv1.NewStreamServiceClient(cc).ListStreams(ctx, &smv1.ListStreamsRequest{}); err != nil {
		t.Fatalf("ListStreams: %v", err)
	}
	srv.GracefulStop() // every call is finished and logged
	return logs.String()
}
