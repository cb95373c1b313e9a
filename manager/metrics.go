package manager

import (
	"net/http"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// errorsByReason counts the errors calls answered, by ErrorInfo reason
// (toStatus counts them).
var errorsByReason = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "streammgr_errors_total",
	Help: "Errors the daemon answered, by google.rpc.ErrorInfo reason.",
}, []string{"reason"})

// metrics is the daemon's Prometheus registry: gRPC calls by method and
// code (go-grpc-middleware's provider), the registry's streams, servers,
// bytes and queues, errors by reason, and the Go runtime and process
// (goroutines, open descriptors).
type metrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics
}

func newMetrics(m *Manager) *metrics {
	x := &metrics{reg: prometheus.NewRegistry(), grpc: grpcprom.NewServerMetrics()}
	x.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		x.grpc,
		errorsByReason,
		&managerCollector{m: m},
	)
	return x
}

// serverOptions are the interceptors that count calls.
func (x *metrics) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(x.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(x.grpc.StreamServerInterceptor()),
	}
}

func (x *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(x.reg, promhttp.HandlerOpts{}))
	return mux
}

var (
	descStreams  = prometheus.NewDesc("streammgr_streams", "Streams the daemon holds, by state (queued, open, eof, closing, closed).", []string{"state"}, nil)
	descServers  = prometheus.NewDesc("streammgr_servers", "Servers the daemon holds, by state (serving, bound, closed).", []string{"state"}, nil)
	descBytesIn  = prometheus.NewDesc("streammgr_bytes_in_total", "Bytes read from the daemon's streams.", nil, nil)
	descBytesOut = prometheus.NewDesc("streammgr_bytes_out_total", "Bytes written to the daemon's streams.", nil, nil)
	descBuffered = prometheus.NewDesc("streammgr_buffered_bytes", "Bytes the memory budget holds (read, replay and write buffers, queued connections).", nil, nil)
	descBudget   = prometheus.NewDesc("streammgr_max_buffered_bytes", "The memory budget (--max-buffered-bytes).", nil, nil)
	descQueued   = prometheus.NewDesc("streammgr_accept_queue_depth", "Accepted connections waiting to be claimed, all servers together.", nil, nil)
	descRejected = prometheus.NewDesc("streammgr_accept_rejected_total", "Connections servers closed at once (queue full, limits).", nil, nil)
	descFDs      = prometheus.NewDesc("streammgr_descriptors_held", "File descriptors the daemon's streams and servers hold.", nil, nil)
)

// managerCollector reads the registry at each scrape.
type managerCollector struct{ m *Manager }

func (c *managerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreams, descServers, descBytesIn, descBytesOut, descBuffered, descBudget, descQueued, descRejected, descFDs} {
		ch <- d
	}
}

func (c *managerCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	m.mu.Lock()
	streams := make([]*Stream, 0, len(m.streams))
	for e := m.order.Front(); e != nil; e = e.Next() {
		streams = append(streams, e.Value.(*Stream))
	}
	servers := make([]*Server, 0, len(m.servers))
	for _, s := range m.servers {
		servers = append(servers, s)
	}
	in, out := m.releasedIn.Load(), m.releasedOut.Load()
	m.mu.Unlock()
	byState := map[string]int{"queued": 0, "open": 0, "eof": 0, "closing": 0, "closed": 0}
	for _, s := range streams {
		byState[s.State()]++
		in += s.R.Consumed()
		out += s.W.Written()
	}
	for st, n := range byState {
		ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(n), st)
	}
	srvState := map[string]int{"serving": 0, "bound": 0, "closed": 0}
	queued, rejected := 0, int64(0)
	for _, s := range servers {
		srvState[s.State()]++
		queued += s.Queued()
		rejected += s.Rejected()
	}
	for st, n := range srvState {
		ch <- prometheus.MustNewConstMetric(descServers, prometheus.GaugeValue, float64(n), st)
	}
	ch <- prometheus.MustNewConstMetric(descBytesIn, prometheus.CounterValue, float64(in))
	ch <- prometheus.MustNewConstMetric(descBytesOut, prometheus.CounterValue, float64(out))
	ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(m.budget.Used()))
	ch <- prometheus.MustNewConstMetric(descBudget, prometheus.GaugeValue, float64(m.budget.Max()))
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(queued))
	ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(rejected))
	ch <- prometheus.MustNewConstMetric(descFDs, prometheus.GaugeValue, float64(m.fds.used.Load()))
}
