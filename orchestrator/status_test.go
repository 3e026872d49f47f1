package orchestrator_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
	"github.com/lpgauge/lpgauge/orchestrator/runtime"
)

// Docker-managed runners whose engine is unreachable: /status itself (not
// only /status/runtime) says why the model's capacity is 0, and what the
// engine error is, so an operator reading the one page gateways read knows
// what to fix.
func TestStatusSaysWhyCapacityIsZero(t *testing.T) {
	dead, err := client.NewClientWithOpts(client.WithHost("unix://"+filepath.Join(t.TempDir(), "docker.sock")), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	p, _ := capability.BySlug("text-to-image")
	cfg := runtime.DefaultConfig()
	cfg.InstanceID, cfg.Image = "test-status-reason", "none"
	cfg.RestartBackoff, cfg.RestartBackoffMax = 20*time.Millisecond, 50*time.Millisecond
	cfg.Models = []runtime.Model{{Pipeline: p, ModelID: "m", Warm: true}}
	rt, err := runtime.New(cfg, dead, gpu.CPU{Reason: "test"}, gpu.DefaultEstimates(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = rt.StartOrRetry(context.Background()) // ErrEngineUnreachable: serves with capacity 0
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rt.Shutdown(ctx)
	}()
	srv, err := orchestrator.New(orchestrator.Config{MaxBodyBytes: 1 << 20, MaxResponseBytes: 1 << 20, MaxQueue: 1,
		QueueTimeout: time.Second, RunnerTimeout: time.Second, ResultTTL: time.Minute, EthAddr: "0xabc"}, rt, orchestrator.OffChain{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.OperatorHandler())
	defer hs.Close()

	st := getStatus(t, hs.URL)
	if len(st.Models) != 1 || st.Models[0].Capacity != 0 {
		t.Fatalf("status %+v, want one model with capacity 0", st)
	}
	if !strings.Contains(st.Models[0].Reason, "docker engine unreachable") || !strings.Contains(st.Models[0].Reason, "retrying") {
		t.Errorf("model reason %q, want the engine error and that it is retried", st.Models[0].Reason)
	}
	if !strings.Contains(st.EngineError, "docker engine unreachable") {
		t.Errorf("engine_error %q", st.EngineError)
	}
	// The fields are additive: readers of the old document still find theirs.
	raw := getRaw(t, hs.URL)
	for _, k := range []string{`"eth_address"`, `"models"`, `"queue_depth"`, `"capacity":0`, `"reason":`, `"engine_error":`} {
		if !strings.Contains(raw, k) {
			t.Errorf("/status lacks %s: %s", k, raw)
		}
	}
}

// Runners that report no reasons (the CPU runners) keep /status as it was:
// no reason or engine_error keys.
func TestStatusWithoutReasons(t *testing.T) {
	ms, err := aimodels.Parse("text-to-image:m:true")
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := cpurunner.New(ms, cpurunner.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	srv, err := orchestrator.New(orchestrator.Config{MaxBodyBytes: 1 << 20, MaxResponseBytes: 1 << 20, MaxQueue: 1,
		QueueTimeout: time.Second, RunnerTimeout: time.Second, ResultTTL: time.Minute}, cpu, orchestrator.OffChain{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.OperatorHandler())
	defer hs.Close()
	if raw := getRaw(t, hs.URL); strings.Contains(raw, "reason") || strings.Contains(raw, "engine_error") {
		t.Errorf("/status of healthy CPU runners: %s", raw)
	}
}

func getRaw(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func getStatus(t *testing.T, base string) orchestrator.Status {
	t.Helper()
	var st orchestrator.Status
	if err := json.Unmarshal([]byte(getRaw(t, base)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}
