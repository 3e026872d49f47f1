package tester

import (
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/tester/identity"
)

// Metrics are the tester's own Prometheus metrics. Orchestrator addresses
// and probe ids are never label values (unbounded); they live in ClickHouse.
type Metrics struct {
	Probes        *prometheus.CounterVec
	Phase         *prometheus.HistogramVec
	Rounds        prometheus.Counter
	PlanFailures  prometheus.Counter
	RoundDuration prometheus.Gauge
	LastRound     prometheus.Gauge
	RowsStored    prometheus.Counter
	StoreErrors   prometheus.Counter
	QueueRows     prometheus.Gauge
	FlushDuration prometheus.Histogram
	// RoundsSkipped counts scheduled rounds that did not run, by reason;
	// RoundsOverrun rounds the deadline stopped; TesterFaults probes
	// excused for the tester's own health, by code.
	RoundsSkipped *prometheus.CounterVec
	RoundsOverrun prometheus.Counter
	TesterFaults  *prometheus.CounterVec

	spool *spoolCollector
}

// NewMetrics registers the metrics on reg. Every series carries the region
// code as the label region, so one Prometheus can scrape every region's
// tester and the dashboards can tell them apart without relabelling.
func NewMetrics(reg prometheus.Registerer, region, testerID string) *Metrics {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"region": region}, reg)
	m := &Metrics{
		Probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tester_probes_total", Help: "Probes finished, by pipeline, outcome and error class.",
		}, []string{"pipeline", "outcome", "error_class"}),
		Phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tester_probe_phase_seconds", Help: "Duration of each probe phase.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"pipeline", "phase"}),
		Rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_rounds_total", Help: "Rounds completed."}),
		PlanFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_discovery_failures_total",
			Help: "Rounds whose orchestrator discovery failed, so they probed the last discovered set."}),
		RoundDuration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tester_round_duration_seconds", Help: "Duration of the last round."}),
		LastRound:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tester_last_round_timestamp_seconds", Help: "Unix time the last round ended."}),
		RowsStored:    prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_store_rows_total", Help: "Result rows stored in ClickHouse."}),
		StoreErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_store_errors_total", Help: "Failed store attempts (each is retried)."}),
		QueueRows:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tester_store_queue_rows", Help: "Results waiting for the batching writer."}),
		FlushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tester_store_flush_seconds", Help: "Time to store one batch, retries included."}),
		RoundsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tester_rounds_skipped_total",
			Help: "Scheduled rounds that did not run, by reason (previous_round_running, tester_late, no_plan)."}, []string{"reason"}),
		RoundsOverrun: prometheus.NewCounter(prometheus.CounterOpts{Name: "tester_rounds_overrun_total",
			Help: "Rounds the round deadline stopped before every probe ended (those probes are excused tester/round_deadline)."}),
		TesterFaults: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tester_own_faults_total",
			Help: "Probes excused for the tester's own health, by code (stall, clock_jump, network_down, control_failed, round_deadline, shutdown)."}, []string{"code"}),
		spool: &spoolCollector{desc: prometheus.NewDesc("tester_spool_bytes",
			"Bytes the on-disk result spool holds (what -spool-max-bytes bounds); grows while ClickHouse is unavailable.", nil, nil)},
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tester_build_info", Help: "Always 1: the build (version) and identity (tester_id) of the tester in each region.",
		ConstLabels: prometheus.Labels{"tester_id": testerID, "version": buildVersion()},
	})
	info.Set(1)
	reg.MustRegister(m.Probes, m.Phase, m.Rounds, m.PlanFailures, m.RoundDuration, m.LastRound, m.RowsStored, m.StoreErrors, m.QueueRows, m.FlushDuration, m.spool, info,
		m.RoundsSkipped, m.RoundsOverrun, m.TesterFaults, identity.Unproven)
	return m
}

// WatchSpool exports tester_spool_bytes for the spool in dir. Until it is
// called (a tester without a store) the series is absent rather than a
// misleading 0.
func (m *Metrics) WatchSpool(dir string) { m.spool.dir.Store(&dir) }

// spoolCollector sizes the spool directory at scrape time, so the gauge
// needs no hook in the writer and cannot drift from the disk.
type spoolCollector struct {
	desc *prometheus.Desc
	dir  atomic.Pointer[string]
}

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	dir := c.dir.Load()
	if dir == nil {
		return
	}
	entries, err := os.ReadDir(*dir)
	if err != nil {
		// Absent, not an invalid metric: that would fail the whole scrape.
		return
	}
	var n int64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size() // a segment deleted meanwhile just counts as gone
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}

// buildVersion is the module version the go command stamped (a tag, or a
// pseudo-version from the commit), "(devel)" when it had none.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// Observe records one result.
func (m *Metrics) Observe(r results.Result) {
	m.Probes.WithLabelValues(r.Pipeline, string(r.Outcome), r.ErrorClass).Inc()
	if r.Outcome == results.Excused && r.ErrorClass == "tester" {
		switch r.ErrorCode {
		case CodeStall, CodeClockJump, CodeNetworkDown, CodeControlFailed, CodeRoundDeadline, CodeShutdown:
			m.TesterFaults.WithLabelValues(r.ErrorCode).Inc()
		}
	}
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"discovery", r.Discovery}, {"connect", r.Connect}, {"tls", r.TLS}, {"upload", r.Upload}, {"server", r.Server},
		{"download", r.Download}, {"media", r.Media}, {"total", r.Total}, {"wall", r.Wall}} {
		if p.d > 0 {
			m.Phase.WithLabelValues(r.Pipeline, p.name).Observe(p.d.Seconds())
		}
	}
}

// Round records a finished round.
func (m *Metrics) Round(s Summary) {
	m.Rounds.Inc()
	if s.PlanErr != nil {
		m.PlanFailures.Inc()
	}
	if s.Overran {
		m.RoundsOverrun.Inc()
	}
	m.RoundDuration.Set(s.Took.Seconds())
	m.LastRound.SetToCurrentTime()
}
