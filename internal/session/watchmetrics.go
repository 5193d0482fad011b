package session

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/volleyscope/volleyscope/internal/breakdown"
)

// Metric names of the continuous watch (watch --listen), in one place:
// the help text and the tests use them.
const (
	MetricComponent = "volleyscope_watch_component_seconds"
	MetricLatency   = "volleyscope_watch_latency_seconds"
	MetricRequests  = "volleyscope_watch_requests_total"
	MetricUnjoined  = "volleyscope_watch_unjoined_total"
	MetricLost      = "volleyscope_watch_lost_events_total"
	MetricShare     = "volleyscope_watch_trace_share"
)

// metricBuckets are the classic histogram buckets, in seconds: factors
// of two from 250 ns to about 134 ms cover a loopback round trip's parts
// and a slow server's reply.
var metricBuckets = prometheus.ExponentialBuckets(250e-9, 2, 20)

// watchMetrics are the continuous watch's Prometheus metrics, fed with
// every round trip the join hands over, and the totals of the interval
// the terminal summary covers. Their state is fixed in size: a
// histogram per component, side and port.
type watchMetrics struct {
	reg       *prometheus.Registry
	component *prometheus.HistogramVec
	latency   *prometheus.HistogramVec
	requests  *prometheus.CounterVec
	unjoined  *prometheus.CounterVec
	side      string // "client" (both sides watched) or "server" (the server's side alone)
	port      string
	// measures says which components the watch measures; the others
	// (always 0) are left out rather than exported as zeros.
	measures func(breakdown.Component) bool

	// sampled, for a time-sampled watch, says so in each terminal
	// summary.
	sampled string

	mu       sync.Mutex
	interval intervalSums
}

// intervalSums are the round trips since the last terminal summary.
type intervalSums struct {
	n, joined int64
	ns        [breakdown.NumComponents]int64
	latency   []int64 // for the interval's p50 and p99; reset each summary
}

// newWatchMetrics registers the metrics of a watch of port; side is the
// side whose latency a round trip is, measures the components it
// measures. lost reads the probe's lost events.
//
// Without prom only the terminal's summaries are kept: the histograms are
// made for scrapers, and a watch with nobody scraping does not pay for
// them.
func newWatchMetrics(side string, port uint16, measures func(breakdown.Component) bool, prom bool, lost func() float64) *watchMetrics {
	m := &watchMetrics{side: side, port: strconv.Itoa(int(port)), measures: measures}
	if !prom {
		return m
	}
	m.reg = prometheus.NewRegistry()
	m.component = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: MetricComponent, Help: "Time of each component of the watched round trips (volleyscope's breakdown), by the side it is spent on.", Buckets: metricBuckets,
	}, []string{"component", "side", "port"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: MetricLatency, Help: "Latency of the watched round trips: the client's (both sides watched) or the server's response time (its side alone).", Buckets: metricBuckets,
	}, []string{"side", "port"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests, Help: "Watched round trips handed to the join."}, []string{"side", "port"})
	m.unjoined = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricUnjoined, Help: "Watched round trips the join could not split, by reason."}, []string{"side", "port", "reason"})
	lostC := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricLost, Help: "Kernel events the probe dropped (full rings).", ConstLabels: prometheus.Labels{"port": m.port}}, lost)
	m.reg.MustRegister(m.component, m.latency, m.requests, m.unjoined, lostC)
	return m
}

// setTraceShare tells the share of the time traced (--trace-share): in
// a gauge for scrapers, and in the terminal's summaries when below 1.
func (m *watchMetrics) setTraceShare(share float64) {
	if share < 1 {
		m.sampled = fmt.Sprintf(" (traced %g of the time, in windows: the rate is the traced windows' round trips over the whole interval)", share)
	}
	if m.reg == nil {
		return
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricShare, ConstLabels: prometheus.Labels{"port": m.port},
		Help: "Share of the time the probe records (watch --trace-share): below 1 it traces in windows, and the requests counted and the histograms are those of the round trips wholly inside them; divide a rate by this for the traffic's whole rate, estimated."})
	g.Set(share)
	m.reg.MustRegister(g)
}

// trip counts one round trip from the join (its goroutine).
func (m *watchMetrics) trip(rt *breakdown.RoundTrip) {
	lat := rt.T1 - rt.T0
	if m.reg != nil {
		m.observe(rt, lat)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	iv := &m.interval
	iv.n++
	if len(iv.latency) < maxIntervalSample {
		iv.latency = append(iv.latency, lat)
	}
	if rt.Joined {
		iv.joined++
		for c, ns := range rt.Ns {
			iv.ns[c] += ns
		}
	}
}

// observe hands one round trip to the Prometheus metrics.
func (m *watchMetrics) observe(rt *breakdown.RoundTrip, lat int64) {
	m.requests.WithLabelValues(m.side, m.port).Inc()
	m.latency.WithLabelValues(m.side, m.port).Observe(float64(lat) / 1e9)
	if !rt.Joined {
		m.unjoined.WithLabelValues(m.side, m.port, rt.Reason).Inc()
	} else {
		for c, ns := range rt.Ns {
			if !m.measures(breakdown.Component(c)) {
				continue
			}
			info := breakdown.Table[c]
			m.component.WithLabelValues(info.Name, info.Side, m.port).Observe(float64(ns) / 1e9)
		}
	}
}

// maxIntervalSample bounds the latencies a terminal summary keeps.
const maxIntervalSample = 1 << 16

// summary is one line on the round trips since the last, and starts the
// next interval.
func (m *watchMetrics) summary(span time.Duration) string {
	m.mu.Lock()
	iv := m.interval
	m.interval = intervalSums{latency: iv.latency[:0:0]}
	m.mu.Unlock()
	if iv.n == 0 {
		return fmt.Sprintf("%s port %s: no round trips in the last %v%s", time.Now().Format("15:04:05"), m.port, span.Round(time.Second), m.sampled)
	}
	lat := iv.latency
	slices.Sort(lat)
	q := func(p float64) time.Duration { return time.Duration(lat[int(p*float64(len(lat)-1))]) }
	s := fmt.Sprintf("%s port %s: %.0f round trips/s, p50 %v, p99 %v, split %.1f%%", time.Now().Format("15:04:05"), m.port,
		float64(iv.n)/span.Seconds(), q(0.5), q(0.99), 100*float64(iv.joined)/float64(iv.n))
	s += m.sampled
	var total int64
	top := 0
	for c, ns := range iv.ns {
		total += ns
		if ns > iv.ns[top] {
			top = c
		}
	}
	if total > 0 && iv.joined > 0 {
		s += fmt.Sprintf("; most: %s %v (%.0f%%)", breakdown.Table[top].Name, time.Duration(iv.ns[top]/iv.joined), 100*float64(iv.ns[top])/float64(total))
	}
	return s
}

// metricsServer serves /metrics on one address to scrapers that present
// the bearer token; anyone else gets 401 and nothing.
type metricsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// serveMetrics listens on addr alone (a host and port; no host is
// refused, so that it never listens on every interface unasked) and
// serves m's metrics to requests bearing token.
func serveMetrics(addr, token string, m *watchMetrics) (*metricsServer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, flagErr("--listen", fmt.Errorf("%q: %w; give HOST:PORT, e.g. 127.0.0.1:9464", addr, err))
	}
	if host == "" {
		return nil, flagErr("--listen", fmt.Errorf("%q names no host: give the address to listen on (127.0.0.1:PORT, or an interface's address); 0.0.0.0 listens on every one", addr))
	}
	if token == "" {
		return nil, flagErr("--listen-token-file", errors.New("--listen needs a bearer token that scrapers present: put one in a file and give --listen-token-file"))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, flagErr("--listen", fmt.Errorf("listen on %s: %w", addr, err))
	}
	want := []byte("Bearer " + token)
	metrics := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="volleyscope"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(w, r)
	})
	s := &metricsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln, done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is where it listens (the port chosen, for port 0).
func (s *metricsServer) Addr() string { return s.ln.Addr().String() }

// close stops serving and closes the listener.
func (s *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}

// ReadTokenFile reads a bearer token from a file: its first line,
// trimmed; an empty token is refused.
func ReadTokenFile(path string) (string, error) {
	b, err := readSmallFile(path)
	if err != nil {
		return "", flagErr("--listen-token-file", err)
	}
	tok := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if tok == "" {
		return "", flagErr("--listen-token-file", fmt.Errorf("%s holds no token on its first line", path))
	}
	return tok, nil
}

// readSmallFile reads a file of at most a few KiB (a token).
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b[:n], nil
}
