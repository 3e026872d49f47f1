package tester

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/internal/results"
)

// Metrics are the tester's own Prometheus metrics. Orchestrator addresses
// and probe ids are never label values (unbounded); they live in ClickHouse.
type Metrics struct {
	Probes        *prometheus.CounterVec
	Phase         *prometheus.HistogramVec
	Rounds        prometheus.Counter
	RoundDuration prometheus.Gauge
	LastRound     prometheus.Gauge
	RowsStored    prometheus.Counter
	StoreErrors   prometheus.Counter
	QueueRows     prometheus.Gauge
	FlushDuration prometheus.Histogram
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer, region, testerID string) *Metrics {
	m := &Metrics{
		Probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tester_probes_total", Help: "Probes finished, by pipeline, outcome and error class.",
		}, []string{"pipeline", "outcome", "error_class"}),
		Phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tester_probe_phase_seconds", Help: "Duration of each probe phase.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"pipeline", "phase"}),
		Rounds:        prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_rounds_total", Help: "Rounds completed."}),
		RoundDuration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tester_round_duration_seconds", Help: "Duration of the last round."}),
		LastRound:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tester_last_round_timestamp_seconds", Help: "Unix time the last round ended."}),
		RowsStored:    prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_store_rows_total", Help: "Result rows stored in ClickHouse."}),
		StoreErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_store_errors_total", Help: "Failed store attempts (each is retried)."}),
		QueueRows:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tester_store_queue_rows", Help: "Results waiting for the batching writer."}),
		FlushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tester_store_flush_seconds", Help: "Time to store one batch, retries included."}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tester_build_info", Help: "Region and identity of this tester.",
		ConstLabels: prometheus.Labels{"region": region, "tester_id": testerID},
	})
	info.Set(1)
	reg.MustRegister(m.Probes, m.Phase, m.Rounds, m.RoundDuration, m.LastRound, m.RowsStored, m.StoreErrors, m.QueueRows, m.FlushDuration, info)
	return m
}

// Observe records one result.
func (m *Metrics) Observe(r results.Result) {
	m.Probes.WithLabelValues(r.Pipeline, string(r.Outcome), r.ErrorClass).Inc()
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"discovery", r.Discovery}, {"connect", r.Connect}, {"tls", r.TLS}, {"upload", r.Upload}, {"server", r.Server},
		{"download", r.Download}, {"media", r.Media}, {"total", r.Total}} {
		if p.d > 0 {
			m.Phase.WithLabelValues(r.Pipeline, p.name).Observe(p.d.Seconds())
		}
	}
}

// Round records a finished round.
func (m *Metrics) Round(s Summary) {
	m.Rounds.Inc()
	m.RoundDuration.Set(s.Took.Seconds())
	m.LastRound.SetToCurrentTime()
}
