package apiserver

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics count requests and their latencies by route pattern (never the
// raw path, so cardinality stays bounded) and status. Each Server has its own
// registry.
type httpMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	handler  http.Handler
}

func newHTTPMetrics() *httpMetrics {
	m := &httpMetrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_http_requests_total",
		Help: "HTTP requests served, by method, route pattern and status code.",
	}, []string{"method", "route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_http_request_duration_seconds",
		Help:    "HTTP request latency, by method, route pattern and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route", "code"})
	m.reg.MustRegister(m.requests, m.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	return m
}

// Registry is the server's Prometheus registry, for other collectors (runs,
// DLQ) to register with.
func (s *Server) Registry() *prometheus.Registry { return s.met.reg }

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (m *httpMetrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		code := strconv.Itoa(rec.status)
		m.requests.WithLabelValues(r.Method, route, code).Inc()
		m.latency.WithLabelValues(r.Method, route, code).Observe(time.Since(start).Seconds())
	})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	s.met.handler.ServeHTTP(w, r)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	writeJSON(w, r, http.StatusOK, statusBody{Status: "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	ctx, cancel := contextWithTimeout(r, 2*time.Second)
	defer cancel()
	if _, err := s.js.AccountInfo(ctx); err != nil {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, r, http.StatusServiceUnavailable, statusBody{Status: "unavailable", Detail: "JetStream: " + err.Error()})
		return nil
	}
	writeJSON(w, r, http.StatusOK, statusBody{Status: "ready"})
	return nil
}
