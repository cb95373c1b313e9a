package main_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
)

// scrape reads the metrics of a daemon's Unix metrics socket.
func scrape(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	resp, err := hc.Get("http://metrics/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %v %v", resp.Status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the metric of family name whose labels include want, or -1.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}

// TestMetrics: after a known workload every family says what happened.
func TestMetrics(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "smm") // short: Unix socket paths end at 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	msock := filepath.Join(dir, "m.sock")
	d := startDaemon(t, false, "--metrics-listen", "unix:"+msock)
	tg := d.unix()
	pr := call[pairResp](t, tg, "OpenPair", m{})
	write(t, tg, pr.First, []byte("twelve bytes"))
	readFull(t, tg, pr.Second, []byte("twelve bytes"))
	fail(t, tg, "Read", m{"streamId": "s-nope", "n": 1}, codes.NotFound, "STREAM_NOT_FOUND")
	var c net.Conn
	srv := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1"}})
	c, err = net.Dial("tcp", srv.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var fams map[string]*dto.MetricFamily
	eventually(t, 10*time.Second, "the queued connection in the metrics", func() bool {
		fams = scrape(t, msock)
		return value(fams, "streammgr_accept_queue_depth", nil) == 1
	})
	for _, w := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"grpc_server_handled_total", map[string]string{"grpc_method": "OpenPair", "grpc_code": "OK"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Read", "grpc_code": "NotFound"}, 1},
		{"streammgr_errors_total", map[string]string{"reason": "STREAM_NOT_FOUND"}, 1},
		{"streammgr_streams", map[string]string{"state": "open"}, 2},
		{"streammgr_streams", map[string]string{"state": "queued"}, 1},
		{"streammgr_servers", map[string]string{"state": "serving"}, 1},
		{"streammgr_bytes_in_total", nil, 12},
		{"streammgr_bytes_out_total", nil, 12},
		{"streammgr_buffered_bytes", nil, 0},
		{"streammgr_max_buffered_bytes", nil, 1},
		{"streammgr_descriptors_held", nil, 3},
		{"go_goroutines", nil, 1},
		{"process_open_fds", nil, 3},
	} {
		if got := value(fams, w.name, w.labels); got < w.min {
			t.Errorf("%s%v = %v, want >= %v", w.name, w.labels, got, w.min)
		}
	}
}
