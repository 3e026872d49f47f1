package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
)

// External runners (aiModels.json `url`) are health-checked too: capacity
// goes to zero with the reason while the endpoint is down, and comes back.
func TestExternalRunnerIsWatched(t *testing.T) {
	var down atomic.Bool
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/health" && down.Load():
			http.Error(w, "upstream gone", http.StatusBadGateway)
		case r.URL.Path == "/health":
			fmt.Fprint(w, `{"status":"OK"}`)
		case r.URL.Path == "/version":
			fmt.Fprint(w, `{"version":"0.14.1"}`)
		}
	}))
	defer ext.Close()
	llm, _ := capability.BySlug("llm")
	m := Model{Pipeline: llm, ModelID: "meta-llama/Llama-3.1-8B-Instruct", URL: ext.URL, Token: "secret", Concurrency: 3}
	cfg := testConfig(t, m)
	cfg.HealthInterval = 200 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	rt := startWith(t, cfg, gpu.CPU{Reason: "test"}, reg)
	waitFor(t, 5*time.Second, "external ready", func() bool { return rt.States()[0].Capacity == 3 })
	st := rt.States()[0]
	if !st.Warm || st.RunnerVersion != "0.14.1" {
		t.Errorf("external state %+v", st)
	}
	l, err := rt.Reserve(context.Background(), llm, m.ModelID)
	if err != nil || l.URL() != ext.URL || l.Token() != "secret" {
		t.Fatalf("lease %v, %v", l, err)
	}
	l.Release()

	down.Store(true)
	waitFor(t, 5*time.Second, "external down noticed", func() bool { return rt.States()[0].Capacity == 0 })
	if ms := modelStatus(rt, m.ModelID); !strings.Contains(ms.Reason, "status 502") {
		t.Errorf("reason %q does not say the endpoint answers 502", ms.Reason)
	}
	if _, err := rt.Reserve(context.Background(), llm, m.ModelID); !errors.Is(err, orchestrator.ErrNoCapacity) {
		t.Errorf("reserve on a down external runner: %v", err)
	}
	down.Store(false)
	waitFor(t, 5*time.Second, "external back", func() bool { return rt.States()[0].Capacity == 3 })

	// Metric names pass the client library's lint (promtool's rules) and
	// show what an operator's dashboard reads.
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %+v", err, problems)
	}
	want := `
# HELP orchestrator_runner_capacity Job slots of serving runners: ready runners × per-runner concurrency.
# TYPE orchestrator_runner_capacity gauge
orchestrator_runner_capacity{model_id="meta-llama/Llama-3.1-8B-Instruct",pipeline="llm"} 3
# HELP orchestrator_runner_missed_reservations_total Jobs refused because no runner slot was free.
# TYPE orchestrator_runner_missed_reservations_total counter
orchestrator_runner_missed_reservations_total{model_id="meta-llama/Llama-3.1-8B-Instruct",pipeline="llm"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "orchestrator_runner_capacity", "orchestrator_runner_missed_reservations_total"); err != nil {
		t.Error(err)
	}
}

func startWith(t *testing.T, cfg Config, inv gpu.Inventory, reg prometheus.Registerer) *Runtime {
	t.Helper()
	needDocker(t)
	rt, err := New(cfg, labelled{engine}, inv, gpu.DefaultEstimates(), slog.New(slog.NewTextHandler(testWriter{t}, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		sweep(t, cfg.InstanceID)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return rt
}

// fixedGPUs is an inventory of GPUs with fixed free memory.
type fixedGPUs []gpu.GPU

func (f fixedGPUs) GPUs() ([]gpu.GPU, error) { return f, nil }
func (f fixedGPUs) Mode() string             { return fmt.Sprintf("test: %d GPUs", len(f)) }
func (f fixedGPUs) Close() error             { return nil }

// A model no GPU can hold never reaches Docker: capacity 0 and the
// placement refusal as the reason, instead of a container that OOMs.
func TestModelThatFitsNoGPUIsRefused(t *testing.T) {
	var gpus fixedGPUs
	for i := range 2 {
		gpus = append(gpus, gpu.GPU{Index: i, UUID: fmt.Sprintf("GPU-%d", i), Name: "NVIDIA GeForce RTX 4090", MemoryTotal: 24 * gpu.GiB, MemoryFree: 23 * gpu.GiB})
	}
	llm, _ := capability.BySlug("llm")
	m := Model{Pipeline: llm, ModelID: "meta-llama/Llama-3.3-70B-Instruct", Warm: true, VRAM: 40 * gpu.GiB}
	cfg := testConfig(t, m)
	rt := startWith(t, cfg, gpus, nil)
	waitFor(t, 5*time.Second, "placement refused", func() bool { return rt.Status().Containers[0].State == Failed })
	ms := modelStatus(rt, m.ModelID)
	if ms.Capacity != 0 || !strings.Contains(ms.Reason, "no GPU has enough free VRAM") || !strings.Contains(ms.Reason, "needs 40.0GiB") {
		t.Errorf("model status %+v", ms)
	}
	if st := rt.Status(); st.GPUMode != "test: 2 GPUs" || len(st.GPUs) != 2 {
		t.Errorf("status GPUs %q %d", st.GPUMode, len(st.GPUs))
	}
}

// The GPU reaches the container by UUID, in the device request shape the
// NVIDIA runtime reads; CPU runners get none.
func TestContainerSpecRequestsGPUByUUID(t *testing.T) {
	cfg := DefaultConfig()
	cfg.InstanceID = "spec"
	rt := &Runtime{cfg: cfg}
	m := t2i("ByteDance/SDXL-Lightning")
	m.OptimizationFlags = map[string]string{"SFAST": "true", "DEEPCACHE": "false"}
	c, h := rt.containerSpec(m, 20001, "GPU-4ea1ff35-886d-3c59-7d99-e49d33924948", "tok")
	dr := h.DeviceRequests
	if len(dr) != 1 || dr[0].Driver != "nvidia" || dr[0].DeviceIDs[0] != "GPU-4ea1ff35-886d-3c59-7d99-e49d33924948" || dr[0].Capabilities[0][0] != "gpu" {
		t.Errorf("device requests %+v", dr)
	}
	if got := strings.Join(c.Env, " "); got != "PIPELINE=text-to-image MODEL_ID=ByteDance/SDXL-Lightning AUTH_TOKEN=tok DEEPCACHE=false SFAST=true" {
		t.Errorf("env %q", got)
	}
	if h.RestartPolicy.Name != "no" {
		t.Errorf("restart policy %q: Docker must not revive runners behind the runtime's back", h.RestartPolicy.Name)
	}
	if _, h := rt.containerSpec(m, 20001, "", "tok"); len(h.DeviceRequests) != 0 {
		t.Errorf("CPU runner has device requests")
	}
	if n := rt.containerName(m, 20001); n != "lpgauge-spec-text-to-image-ByteDance-SDXL-Lightning-20001" {
		t.Errorf("name %q", n)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.InstanceID = "o1"
	ok.Models = []Model{t2i("a")}
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"no instance": {func(c *Config) { c.InstanceID = "" }, "instance id is empty"},
		"ports":       {func(c *Config) { c.PortFirst, c.PortLast = 30000, 20000 }, "port range 30000-20000"},
		"twice":       {func(c *Config) { c.Models = append(c.Models, t2i("a")) }, "listed twice"},
		"policy":      {func(c *Config) { c.GPUPolicy = "random" }, `gpu policy "random"`},
		"backoff":     {func(c *Config) { c.RestartBackoffMax = time.Millisecond }, "restart backoff max"},
	} {
		c := ok
		c.Models = append([]Model(nil), ok.Models...)
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
