//go:build linux

package main_test

// TestPollerEchoAB compares the echo round trip (unary Write+Read, and a
// Session) of two daemons of the working tree, one with the shared idle
// poller and one without, paired: the two take turns in short chunks of round trips, and
// the result is the median over the chunks of each chunk pair's p50 ratio,
// which a shared machine's drifting load affects far less than the
// table's ratio of medians:
//
//	STREAMMGR_BENCH=1 go test -run '^TestPollerEchoAB$' -count=1 -v ./cmd/streammgrd/
//
// STREAMMGR_BENCH_AB_CHUNKS (default 40) chunks of
// STREAMMGR_BENCH_AB_ROUNDTRIPS (default 200) round trips each;
// STREAMMGR_BENCH_AB_GAP (a duration, default 0) sleeps before each chunk,
// so that with a gap over a second every chunk starts with the stream idle
// in the poller.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

func TestPollerEchoAB(t *testing.T) {
	if os.Getenv(benchGateEnv) != "1" {
		t.Skip("paired echo benchmark; run with " + benchGateEnv + "=1")
	}
	envInt := func(name string, def int) int {
		if s := os.Getenv(name); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v <= 0 {
				t.Fatalf("%s=%q: want a positive integer", name, s)
			}
			return v
		}
		return def
	}
	chunks := envInt("STREAMMGR_BENCH_AB_CHUNKS", 40)
	per := envInt("STREAMMGR_BENCH_AB_ROUNDTRIPS", 200)
	var gap time.Duration
	if s := os.Getenv("STREAMMGR_BENCH_AB_GAP"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("STREAMMGR_BENCH_AB_GAP=%q: %v", s, err)
		}
		gap = d
	}
	python, _ := exec.LookPath("python3")
	echoAddr, echoKind := startEchoServer(t, python)
	bin := daemonBinary(t)
	type side struct {
		name string
		run  func(context.Context, int) ([]time.Duration, error)
	}
	var clients []smv1.StreamServiceClient
	flags := []string{"--idle-poller=false", "--idle-poller"}
	for _, f := range flags {
		_, cc, err := startBenchDaemon(t, bin, append(logFlags(bin), f))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, smv1.NewStreamServiceClient(cc))
	}
	kinds := []struct {
		name  string
		start func(*testing.T, smv1.StreamServiceClient, string) (func(context.Context, int) ([]time.Duration, error), error)
	}{{"unary Write+Read", daemonUnary}, {"Session", daemonSession}}
	for _, k := range kinds {
		var sides []side
		for i, c := range clients {
			run, err := k.start(t, c, echoAddr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := run(context.Background(), per); err != nil { // warm up
				t.Fatal(err)
			}
			sides = append(sides, side{flags[i], run})
		}
		pairedEcho(t, k.name, echoKind, sides[0].name, sides[0].run, sides[1].name, sides[1].run, chunks, per, gap)
	}
}

// pairedEcho runs chunks of per round trips on a and b in turns and prints
// the median per-chunk p50s and the median of b's over a's, chunk by chunk.
func pairedEcho(t *testing.T, kind, echoKind, nameA string, a func(context.Context, int) ([]time.Duration, error), nameB string, b func(context.Context, int) ([]time.Duration, error), chunks, per int, gap time.Duration) {
	type side struct {
		name string
		run  func(context.Context, int) ([]time.Duration, error)
	}
	sides := []side{{nameA, a}, {nameB, b}}
	p50 := func(s side) float64 {
		time.Sleep(gap)
		ctx, cancel := context.WithTimeout(context.Background(), latencyTimeout(per))
		defer cancel()
		samples, err := s.run(ctx, per)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		return micros(percentile(samples, 50))
	}
	var ratios, as, bs []float64
	for i := range chunks {
		var pa, pb float64
		if i%2 == 0 {
			pa = p50(sides[0])
			pb = p50(sides[1])
		} else {
			pb = p50(sides[1])
			pa = p50(sides[0])
		}
		as, bs, ratios = append(as, pa), append(bs, pb), append(ratios, pb/pa)
	}
	slices.Sort(ratios)
	fmt.Printf("\nPaired %s echo (%s echo server, %d-byte payload), %d chunks of %d round trips, gap %v; load average %s\n",
		kind, echoKind, echoSize, chunks, per, gap, loadAvg())
	fmt.Printf("| Daemon | p50 µs (median of chunks) |\n|---|---:|\n| %s | %.1f |\n| %s | %.1f |\n",
		sides[0].name, median(as), sides[1].name, median(bs))
	fmt.Printf("%s ÷ %s, per chunk pair: median %.3f, quartiles %.3f..%.3f\n\n",
		sides[1].name, sides[0].name, median(ratios), ratios[len(ratios)/4], ratios[3*len(ratios)/4])
}
