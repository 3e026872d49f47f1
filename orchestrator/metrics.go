package orchestrator

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the orchestrator's Prometheus series. Labels are pipeline
// slugs, status codes and reasons: bounded sets, no addresses or ids.
type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	refused    *prometheus.CounterVec
	queueDepth prometheus.Gauge
	bodyBytes  prometheus.Gauge
	media      prometheus.Gauge
	evicted    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, runners Runners) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_requests_total",
			Help: "AI requests answered, by pipeline and HTTP status code.",
		}, []string{"pipeline", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orchestrator_request_duration_seconds",
			Help:    "Time from request arrival to the end of the response, by pipeline.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
		}, []string{"pipeline"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_refused_jobs_total",
			Help: "Jobs refused before running, by pipeline and reason (capacity, gate, payment, bad_request, too_large, timeout, body_budget).",
		}, []string{"pipeline", "reason"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orchestrator_queue_depth",
			Help: "Requests waiting for a free runner slot.",
		}),
		bodyBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orchestrator_body_bytes_in_flight",
			Help: "Request-body bytes reserved by requests being read or run (bounded by -max-body-bytes-in-flight).",
		}),
		media: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orchestrator_result_media_bytes",
			Help: "Result media bytes held under /stream/ (bounded by -max-result-bytes).",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orchestrator_result_media_evicted_total",
			Help: "Requests whose result media were evicted before their TTL to stay under -max-result-bytes.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.refused, m.queueDepth, m.bodyBytes, m.media, m.evicted, capacityCollector{runners})
	return m
}

var (
	capacityDesc = prometheus.NewDesc("orchestrator_model_capacity",
		"Runner slots ready for a (pipeline, model).", []string{"pipeline", "model"}, nil)
	inUseDesc = prometheus.NewDesc("orchestrator_model_in_use",
		"Runner slots busy for a (pipeline, model).", []string{"pipeline", "model"}, nil)
)

// capacityCollector reads capacity from the runners at scrape time, so the
// series can never drift from what Reserve sees.
type capacityCollector struct{ runners Runners }

func (capacityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- capacityDesc
	ch <- inUseDesc
}

func (c capacityCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.runners.States() {
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(st.Capacity), st.Pipeline.Slug, st.Model)
		ch <- prometheus.MustNewConstMetric(inUseDesc, prometheus.GaugeValue, float64(st.InUse), st.Pipeline.Slug, st.Model)
	}
}
