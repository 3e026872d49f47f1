package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the leaderboard's Prometheus series, named as in
// dashboards/metrics.txt (the dashboards' contract). Each API has its own
// registry so several servers (tests) never collide.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	storeErrors *prometheus.CounterVec
}

// storeOperations are the labels storeFailed uses; they are created up
// front so a dashboard sees 0 rather than no series before the first error.
var storeOperations = []string{
	"aggregates", "median", "pipelines", "raw", "ingest", "nonce", "regions", "latencies",
	"history", "bucket medians", "errors", "perf scores", "failure streaks", "blocklist scores",
	"orchestrator scores", "service uris",
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaderboard_http_requests_total",
			Help: "HTTP requests answered, by route pattern (not raw path), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "leaderboard_http_request_duration_seconds",
			Help:    "Time from request received to response written.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaderboard_store_errors_total",
			Help: "Failed ClickHouse reads and ingest writes, by store operation.",
		}, []string{"operation"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.storeErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, op := range storeOperations {
		m.storeErrors.WithLabelValues(op)
	}
	return m
}

// knownMethods keeps the method label bounded: anything else is "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodDelete: true, http.MethodOptions: true, http.MethodPatch: true,
}

// instrument counts and times every request by gin's route pattern, so
// /api/raw_stats?orchestrator=… is one series and unknown paths one more.
func (m *metrics) instrument(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	method := c.Request.Method
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
	m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
}

func (m *metrics) handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		h.ServeHTTP(c.Writer, c.Request)
	}
}
