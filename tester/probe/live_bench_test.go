package probe

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// liveProfile is what a live orchestrator is told to do, and so what the
// probe must measure: its in→out latency and output frame rate.
type liveProfile struct {
	latency time.Duration
	outFPS  float64
}

// liveAccuracy runs n live probes against an orchestrator made by newO and
// returns the first (cold: new connections, the runner's first session)
// and the rest (warm).
func liveAccuracy(tb testing.TB, n int, cfg LiveConfig, newO func(tb testing.TB) (serviceURI string, idle func())) (cold results.Result, warm []results.Result) {
	tb.Helper()
	uri, idle := newO(tb)
	p := New(Config{Live: cfg, Timeouts: Timeouts{Total: cfg.Duration + 30*time.Second}})
	for i := 0; i < n; i++ {
		idle()
		r := p.Run(context.Background(), Job{Orchestrator: "0x1111111111111111111111111111111111111111", ServiceURI: uri,
			Pipeline: LiveVideoToVideo{}, Model: "noop", Seed: int64(i + 1)})
		if r.Outcome != results.Success {
			tb.Fatalf("probe %d: %s %s/%s: %s", i, r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		}
		if i == 0 {
			cold = r
		} else {
			warm = append(warm, r)
		}
	}
	return cold, warm
}

// liveErrors are a probe's errors against the profile: of the median
// latency, and of the output frame rate in percent.
func liveErrors(r results.Result, want liveProfile) (latErr time.Duration, fpsErrPct float64) {
	latErr = r.Live.LatencyP50 - want.latency
	if latErr < 0 {
		latErr = -latErr
	}
	return latErr, 100 * math.Abs(r.Live.OutFPS-want.outFPS) / want.outFPS
}

func medianDur(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(f []float64) float64 {
	s := slices.Clone(f)
	slices.Sort(s)
	return s[len(s)/2]
}

// runnerO is the fake live orchestrator handing each start to the CPU live
// runner (orchestrator/runner) with prof as its LiveProfile: the runner
// waits Latency from an input segment's last byte to the start of its
// output and drops frames to OutFPS.
func runnerO(prof liveProfile) func(tb testing.TB) (string, func()) {
	return runnerWith(runner.LiveProfile{Latency: prof.latency, OutFPS: int(prof.outFPS)})
}

// runnerWith is runnerO with any LiveProfile.
func runnerWith(lp runner.LiveProfile) func(tb testing.TB) (string, func()) {
	return func(tb testing.TB) (string, func()) {
		r, err := runner.New(runner.Config{Pipeline: "live-video-to-video", ModelID: "noop", Live: lp})
		if err != nil {
			tb.Fatal(err)
		}
		rs := httptest.NewServer(r.Handler())
		tb.Cleanup(func() { r.Close(); rs.Close() })
		o := newFakeLiveO(tb, liveHealthy)
		o.runnerURL = rs.URL
		// The runner takes one stream at a time and reports IDLE on
		// /health once its input has ended, as O waits for it
		// (go-livepeer ai/worker/docker.go:601-690).
		idle := func() {
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				resp, err := http.Get(rs.URL + "/health")
				if err != nil {
					continue
				}
				var h struct{ Status string }
				err = json.NewDecoder(resp.Body).Decode(&h)
				_ = resp.Body.Close()
				if err == nil && h.Status != "OK" {
					return
				}
			}
			tb.Fatal("the live runner stayed busy 5 s after the probe's session ended")
		}
		return o.hs.URL, idle
	}
}

// BenchmarkLiveAccuracy: the live probe against the CPU live runner with an
// injected profile (80 ms latency, 15 fps out of 30 in). Reported, medians,
// cold = the first probe (new connections, the runner's first stream) and
// warm = the others: the error of the median in→out latency (target
// ≤ 5 ms), the output fps error (target ≤ 2 %) and the time to the first
// transformed frame. Each iteration is 5 live probes of 5 s:
// go test -run XXX -bench Live -benchtime=1x ./tester/probe/
func BenchmarkLiveAccuracy(b *testing.B) {
	// The runner's and orchestrator's logs would split the benchmark's
	// result line, which scripts/bench.sh parses.
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	prof := liveProfile{latency: 80 * time.Millisecond, outFPS: 15}
	cfg := LiveConfig{Duration: 5 * time.Second, FPS: 30, Width: 128, Height: 64, Segment: 500 * time.Millisecond}
	for i := 0; i < b.N; i++ {
		cold, warm := liveAccuracy(b, 5, cfg, runnerO(prof))
		cl, cf := liveErrors(cold, prof)
		var lats []time.Duration
		var fpss []float64
		var ttff []time.Duration
		for _, r := range warm {
			l, f := liveErrors(r, prof)
			lats, fpss, ttff = append(lats, l), append(fpss, f), append(ttff, r.Live.FirstFrame)
		}
		b.ReportMetric(float64(cl.Microseconds())/1000, "cold-latency-err-ms")
		b.ReportMetric(cf, "cold-fps-err-%")
		b.ReportMetric(float64(cold.Live.FirstFrame.Microseconds())/1000, "cold-ttff-ms")
		b.ReportMetric(float64(medianDur(lats).Microseconds())/1000, "warm-latency-err-ms")
		b.ReportMetric(medianF(fpss), "warm-fps-err-%")
		b.ReportMetric(float64(medianDur(ttff).Microseconds())/1000, "warm-ttff-ms")
		// What the first frame took beyond the first segment's time and
		// the runner's latency: the start request, the runner's start,
		// the transfers.
		b.ReportMetric(float64((medianDur(ttff)-cfg.Segment-prof.latency).Microseconds())/1000, "warm-ttff-excess-ms")
	}
}

// The failure classes against the CPU live runner itself, each made by its
// LiveProfile: a stall mid-stream, dropped segments, passthrough, no output.
func TestLiveProbeRunnerProfiles(t *testing.T) {
	for _, tt := range []struct {
		name string
		lp   runner.LiveProfile
		code string
	}{
		{"stall", runner.LiveProfile{StallAfter: time.Second, StallFor: 1500 * time.Millisecond}, CodeLiveStalled},
		{"drop", runner.LiveProfile{DropEvery: 4}, CodeLiveDropped},
		{"passthrough", runner.LiveProfile{Passthrough: true}, CodeLiveUntransformed},
		{"no output", runner.LiveProfile{NoOutput: true}, CodeLiveNoOutput},
	} {
		t.Run(tt.name, func(t *testing.T) {
			uri, idle := runnerWith(tt.lp)(t)
			idle()
			r := New(Config{Live: liveTestConfig, Timeouts: Timeouts{Total: 30 * time.Second}}).Run(context.Background(),
				Job{Orchestrator: "0x1111111111111111111111111111111111111111", ServiceURI: uri, Pipeline: LiveVideoToVideo{}, Model: "noop", Seed: 3})
			if r.Outcome != results.Failure || r.ErrorCode != tt.code {
				t.Fatalf("runner profile %+v: %s %s/%s (%s), want %s; %+v", tt.lp, r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, tt.code, r.Live)
			}
		})
	}
}

// The small version of the benchmark, with loose bounds for a loaded
// machine: against the CPU live runner at 80 ms and 10 of 20 fps, the
// probe's median latency is the runner's within 25 ms, its output fps the
// runner's within 5 %, and the first frame comes after the first segment's
// time plus the runner's latency.
func TestLiveProbeMatchesProfile(t *testing.T) {
	prof := liveProfile{latency: 80 * time.Millisecond, outFPS: 10}
	cold, warm := liveAccuracy(t, 2, liveTestConfig, runnerO(prof))
	for _, r := range append(warm, cold) {
		lat, fps := liveErrors(r, prof)
		t.Logf("p50 %s (err %s), fps %.2f (err %.2f %%), first frame %s", r.Live.LatencyP50, lat, r.Live.OutFPS, fps, r.Live.FirstFrame)
		if lat > 25*time.Millisecond || fps > 5 {
			t.Fatalf("median latency %s for a runner at %s; fps %.2f for %.0f", r.Live.LatencyP50, prof.latency, r.Live.OutFPS, prof.outFPS)
		}
		if first := liveTestConfig.Segment + prof.latency; r.Live.FirstFrame < first || r.Live.FirstFrame > first+200*time.Millisecond {
			t.Fatalf("first frame after %s: the first segment goes out after %s and comes back %s later", r.Live.FirstFrame, liveTestConfig.Segment, prof.latency)
		}
	}
}
