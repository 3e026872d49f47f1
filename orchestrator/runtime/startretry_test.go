package runtime

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/lpgauge/lpgauge/orchestrator/gpu"
)

// An engine that is not there at start: StartOrRetry says so with
// ErrEngineUnreachable, the model has capacity 0 with the reason on Status,
// and Shutdown ends the background retries promptly. (Recovery once the
// engine answers is the fault suite's TestDockerEngineUnavailableAtStart,
// against the real binary.)
func TestStartOrRetryWithoutEngine(t *testing.T) {
	dead, err := client.NewClientWithOpts(client.WithHost("unix://"+filepath.Join(t.TempDir(), "docker.sock")), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	cfg := DefaultConfig()
	cfg.InstanceID, cfg.Image = "test-no-engine", "none"
	cfg.RestartBackoff, cfg.RestartBackoffMax = 20*time.Millisecond, 50*time.Millisecond
	cfg.Models = []Model{t2i("m")}
	rt, err := New(cfg, dead, gpu.CPU{Reason: "test"}, gpu.DefaultEstimates(), slog.New(slog.NewTextHandler(testWriter{t}, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartOrRetry(context.Background()); !errors.Is(err, ErrEngineUnreachable) {
		t.Fatalf("StartOrRetry: %v, want ErrEngineUnreachable", err)
	}
	time.Sleep(200 * time.Millisecond) // a few retries
	if st := rt.States(); len(st) != 1 || st[0].Capacity != 0 {
		t.Errorf("states %+v, want one model with capacity 0", st)
	}
	st := rt.Status()
	if !strings.Contains(st.EngineError, "docker engine unreachable") || len(st.Models) != 1 ||
		!strings.Contains(st.Models[0].Reason, "docker engine unreachable") {
		t.Errorf("status does not say the engine is unreachable: engine_error %q, models %+v", st.EngineError, st.Models)
	}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("shutdown took %s with retries pending", d)
	}
}
