package tester

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// BenchmarkServerPhaseAccuracy runs rounds over a fleet of fake
// orchestrators with known injected server times and reports how far the
// measured server phase sits from them (median and p99 of measured −
// injected) and the probe throughput.
//
//	go test -run '^$' -bench ServerPhaseAccuracy -benchtime 5x ./tester/
//
// LPGAUGE_BENCH_FLEET=ORCHSxMODELS sets the fleet (default 24x2; the issue's
// scale, what `make bench` runs, is 500x4).
func BenchmarkServerPhaseAccuracy(b *testing.B) {
	fleet, models := benchFleet(b)
	injected := map[string]time.Duration{}
	orchs := map[string]*orchtest.Orch{}
	var entries []string
	for i := 0; i < fleet; i++ {
		d := time.Duration(20+10*(i%10)) * time.Millisecond
		o := orchtest.New(b, orchtest.Behaviour{Delay: d})
		injected[o.Address] = d
		orchs[o.Address] = o
		entries = append(entries, o.Target())
	}
	targets, err := ParseTargets(strings.Join(entries, ","))
	if err != nil {
		b.Fatal(err)
	}
	plan, _ := Plan(targets, models)
	tt := newTesterB(b)
	var errs, obsErrs []time.Duration
	probes := 0
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var sink collect
		sum := tt.RunRound(context.Background(), time.Unix(int64(i), 0), plan, &sink)
		for _, r := range sum.Results {
			if r.Outcome != "success" {
				b.Fatalf("probe failed: %s/%s %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
			}
			errs = append(errs, r.Server-injected[r.Orchestrator])
		}
		probes += len(sum.Results)
		// Against what each fake actually spent (its sleep overshoots under
		// load): the tester's own measurement error. One probe at a time per
		// orchestrator, so its results in start order match its served list.
		byOrch := map[string][]time.Duration{}
		sort.Slice(sum.Results, func(i, j int) bool { return sum.Results[i].StartedAt.Before(sum.Results[j].StartedAt) })
		for _, r := range sum.Results {
			byOrch[r.Orchestrator] = append(byOrch[r.Orchestrator], r.Server)
		}
		for addr, measured := range byOrch {
			served := orchs[addr].ServedTimes()
			served = served[len(served)-len(measured):] // this round's
			for k := range measured {
				obsErrs = append(obsErrs, measured[k]-served[k])
			}
		}
	}
	b.StopTimer()
	q := func(d []time.Duration, p float64) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[int(p*float64(len(d)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(errs, 0.5), "err_p50_ms")
	b.ReportMetric(q(errs, 0.99), "err_p99_ms")
	b.ReportMetric(q(obsErrs, 0.5), "obs_err_p50_ms")
	b.ReportMetric(q(obsErrs, 0.99), "obs_err_p99_ms")
	b.ReportMetric(float64(probes)/time.Since(start).Seconds(), "probes/s")
}

func newTesterB(b *testing.B) *Tester {
	fra, err := regions.ForTester("FRA")
	if err != nil {
		b.Fatal(err)
	}
	tt, err := New(Config{Region: fra, TesterID: testerID, Prober: probe.New(probe.Config{}), Concurrency: 16})
	if err != nil {
		b.Fatal(err)
	}
	return tt
}
