package dashboards

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
	"github.com/lpgauge/lpgauge/orchestrator/runtime"
	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/probe"
	"github.com/lpgauge/lpgauge/tester/writer"
)

// scrape is one component's /metrics answer, raw (for promtool) and parsed.
type scrape struct {
	component string
	text      []byte
	families  map[string]*dto.MetricFamily
}

// TestListedMetricsAreExported closes the loop metrics.txt opens: every
// metric a panel may read is exported by a real component, with exactly the
// listed type and labels. Each component is built as its binary builds it,
// exercised once (a tester round probing the reference orchestrator, one
// refused job, one leaderboard request) so labelled vectors have series, and
// scraped over HTTP. Each scrape must also pass `promtool check metrics`.
func TestListedMetricsAreExported(t *testing.T) {
	scrapes := exerciseComponents(t)

	byName := map[string]*dto.MetricFamily{}
	where := map[string]string{}
	for _, s := range scrapes {
		binary, _, _ := strings.Cut(s.component, "-") // orchestrator-runtime is part of orchestrator
		for name, f := range s.families {
			prefix, _, _ := strings.Cut(name, "_")
			if prefix == "go" || prefix == "process" || prefix == "promhttp" {
				continue // the client library's, the same in every binary
			}
			if prefix != binary {
				t.Errorf("%s exports %s: one prefix per binary, want %s_", s.component, name, binary)
			}
			if other, dup := where[name]; dup {
				t.Errorf("%s is exported by both %s and %s", name, other, s.component)
			}
			byName[name], where[name] = f, s.component
		}
	}
	listed := loadMetrics(t)
	for _, m := range listed {
		f, ok := byName[m.Name]
		if !ok {
			t.Errorf("%s is in metrics.txt but no component exports it: rename it on the panel or add it to the binary", m.Name)
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != m.Type {
			t.Errorf("%s (%s): metrics.txt says %s, the binary exports a %s", m.Name, where[m.Name], m.Type, got)
		}
		if len(f.GetMetric()) == 0 {
			t.Errorf("%s (%s): no series after exercising the component; the label check below saw nothing", m.Name, where[m.Name])
			continue
		}
		got := exportedLabels(f)
		want := slices.Sorted(slices.Values(m.Labels))
		if !slices.Equal(got, want) {
			t.Errorf("%s (%s): metrics.txt lists labels %v, the binary exports %v", m.Name, where[m.Name], want, got)
		}
	}
	var unlisted []string
	for name, c := range where {
		if _, ok := listed[name]; !ok {
			unlisted = append(unlisted, name+" ("+c+")")
		}
	}
	sort.Strings(unlisted)
	// Not an error: metrics.txt lists what dashboards read, not everything.
	t.Logf("exported but not in metrics.txt: %s", strings.Join(unlisted, ", "))

	for _, s := range scrapes {
		t.Run("promtool/"+s.component, func(t *testing.T) { promtoolCheck(t, s.text) })
	}
}

// exportedLabels is the sorted union of label names over a family's series
// (le and quantile belong to the histogram or summary, not to the metric).
func exportedLabels(f *dto.MetricFamily) []string {
	seen := map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			seen[l.GetName()] = true
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for l := range seen {
			if !yield(l) {
				return
			}
		}
	})
}

func exerciseComponents(t *testing.T) []scrape {
	t.Helper()
	db := chtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The reference orchestrator as cmd/orchestrator builds it without a
	// runtime: CPU runners, the off-chain gate, its own registry on /metrics.
	models, err := aimodels.Parse("text-to-image:ByteDance/SDXL-Lightning:true")
	if err != nil {
		t.Fatal(err)
	}
	runners, err := cpurunner.New(models, cpurunner.Config{Latency: runner.Latency{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runners.Close)
	orch, err := orchestrator.New(orchestrator.Config{MaxBodyBytes: 1 << 20, MaxResponseBytes: 64 << 20, MaxQueue: 4,
		QueueTimeout: time.Second, RunnerTimeout: time.Minute, ResultTTL: time.Minute, EthAddr: "0xabc"}, runners, orchestrator.OffChain{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orch.Close)
	orchSrv := httptest.NewServer(orch.Handler())
	t.Cleanup(orchSrv.Close)
	orchOp := httptest.NewServer(orch.OperatorHandler()) // /metrics is on the operator listener
	t.Cleanup(orchOp.Close)
	// One refused job, so the refusal counter has a series.
	resp, err := http.Post(orchSrv.URL+"/text-to-image", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed job: status %d, want 400", resp.StatusCode)
	}

	// The tester as cmd/tester builds it: Go and process collectors, its
	// metrics, a spooled writer whose hooks feed them. One round probes the
	// reference orchestrator above, which gives it one job to run.
	treg := prometheus.NewRegistry()
	treg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fra, err := regions.ForTester("FRA")
	if err != nil {
		t.Fatal(err)
	}
	met := tester.NewMetrics(treg, fra.Code, "0x00000000000000000000000000000000000000aa")
	spoolDir := t.TempDir()
	sp, err := writer.OpenSpool(spoolDir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	met.WatchSpool(spoolDir)
	w := writer.NewSpooled(writer.Table{Conn: db.Conn, DB: db.Name}, sp, writer.Config{BatchSize: 10, FlushInterval: 50 * time.Millisecond}, nil,
		writer.Hooks{
			Flushed: func(n int, took time.Duration) {
				met.RowsStored.Add(float64(n))
				met.FlushDuration.Observe(took.Seconds())
			},
			Failed: func(error) { met.StoreErrors.Inc() },
			Queued: func(d int) { met.QueueRows.Set(float64(d)) },
		})
	targets, err := tester.ParseTargets("0x00000000000000000000000000000000000000bb=" + orchSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	tms, err := tester.ParseModels("text-to-image:ByteDance/SDXL-Lightning")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := tester.Plan(targets, tms)
	if err != nil {
		t.Fatal(err)
	}
	tt, err := tester.New(tester.Config{Region: fra, TesterID: "0x00000000000000000000000000000000000000aa",
		Prober: probe.New(probe.Config{}), Concurrency: 1, Observe: met.Observe})
	if err != nil {
		t.Fatal(err)
	}
	sum := tt.RunRound(ctx, time.Now().Truncate(time.Second), plan, w)
	met.Round(sum)
	if err := w.Close(ctx); err != nil {
		t.Fatalf("close writer: %v", err)
	}
	if c := sum.Counts(); len(sum.Results) != 1 || c[results.Success] != 1 {
		t.Fatalf("the tester's probe of the reference orchestrator: %+v, want one success", sum.Results)
	}

	// The runner runtime as cmd/orchestrator -runtime builds it, on its own
	// registry (served at /metrics/runtime). Start would need Docker; its
	// gauges come from its records, which New already has.
	rreg := prometheus.NewRegistry()
	rcfg := runtime.DefaultConfig()
	rcfg.InstanceID = "dashboards-test"
	t2i, _ := capability.BySlug("text-to-image")
	rcfg.Models = []runtime.Model{{Pipeline: t2i, ModelID: "ByteDance/SDXL-Lightning", Warm: true, URL: "http://127.0.0.1:1"}}
	if _, err := runtime.New(rcfg, nil, gpu.CPU{Reason: "test"}, gpu.DefaultEstimates(), nil, rreg); err != nil {
		t.Fatal(err)
	}

	// The leaderboard API over the test database, after one request.
	st, err := store.NewClickHouse(db.Conn, db.Name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lbSrv := httptest.NewServer(api.New(api.Config{}, st))
	t.Cleanup(lbSrv.Close)
	if b, code := get(t, lbSrv.URL+"/api/regions"); code != http.StatusOK {
		t.Fatalf("leaderboard /api/regions: %d %s", code, b)
	}

	return []scrape{
		scrapeURL(t, "tester", serve(t, treg)+"/metrics"),
		scrapeURL(t, "orchestrator", orchOp.URL+"/metrics"),
		scrapeURL(t, "orchestrator-runtime", serve(t, rreg)+"/metrics"),
		scrapeURL(t, "leaderboard", lbSrv.URL+"/metrics"),
	}
}

// serve exposes reg the way cmd/tester and cmd/orchestrator do.
func serve(t *testing.T, reg *prometheus.Registry) string {
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func get(t *testing.T, url string) ([]byte, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, resp.StatusCode
}

func scrapeURL(t *testing.T, component, url string) scrape {
	t.Helper()
	b, code := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", component, url, code, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s %s: not the text exposition format: %v", component, url, err)
	}
	return scrape{component: component, text: b, families: fams}
}

// promtoolCheck runs `promtool check metrics` (Debian package prometheus)
// on one scrape and fails on anything it reports. Without promtool it skips
// loudly, except under CI, where a missing linter must not pass.
func promtoolCheck(t *testing.T, text []byte) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found: install Debian's prometheus package (apt-get install prometheus) to lint the exposition"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Errorf("promtool check metrics (exit %d):\n%s", exit.ExitCode(), out)
	case err != nil:
		t.Fatalf("promtool: %v", err)
	case len(bytes.TrimSpace(out)) > 0:
		// Older promtools print lint problems and still exit 0.
		t.Errorf("promtool check metrics:\n%s", out)
	}
}
