package node

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
	"github.com/lpgauge/lpgauge/orchestrator/runtime"
)

// dockerFlags are the flags of -runners=docker: runner containers on the
// Docker engine, placed on GPUs read through NVML (CPU mode without a driver).
type dockerFlags struct {
	cfg           runtime.Config
	vramEstimates string
}

func (d *dockerFlags) register(fs *flag.FlagSet) {
	d.cfg.RegisterFlags(fs)
	fs.StringVar(&d.vramEstimates, "runtime.vram-estimates", "", "VRAM per pipeline or model id for GPU placement, e.g. text-to-image=18GiB,meta-llama/Llama-3.1-8B-Instruct=40GiB,default=12GiB")
}

// startDocker builds and starts the Docker runtime for models. The returned
// handler serves GET /status/runtime (containers, GPUs, reasons) and
// GET /metrics/runtime; stop shuts every container down.
func (d *dockerFlags) startDocker(ctx context.Context, models []aimodels.Model, ethAddr string, log *slog.Logger) (rt *runtime.Runtime, extra http.Handler, stop func(), err error) {
	cfg := d.cfg
	if cfg.InstanceID == "" {
		cfg.InstanceID = ethAddr // one identity per orchestrator, as go-livepeer's creator_id
	}
	for _, m := range models {
		p, ok := capability.BySlug(m.Pipeline)
		if !ok {
			return nil, nil, nil, fmt.Errorf("aiModels: unknown pipeline %q", m.Pipeline)
		}
		rm := runtime.Model{Pipeline: p, ModelID: m.ModelID, Warm: m.Warm, URL: m.URL, Token: m.Token, OptimizationFlags: map[string]string{}}
		for k, v := range m.OptimizationFlags {
			rm.OptimizationFlags[k] = string(v)
		}
		// aiModels.json's capacity is replicas for managed runners and
		// concurrent requests for an external URL (go-livepeer's meaning).
		if m.URL != "" {
			rm.Concurrency = m.Capacity
		} else {
			rm.Containers = m.Capacity
		}
		cfg.Models = append(cfg.Models, rm)
	}
	est, err := gpu.ParseEstimates(d.vramEstimates, gpu.DefaultEstimates(), pipelineSlugs())
	if err != nil {
		return nil, nil, nil, err
	}
	inv, err := gpu.OpenSystem()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("gpu inventory: %w", err)
	}
	engine, err := runtime.NewEngine()
	if err != nil {
		_ = inv.Close()
		return nil, nil, nil, err
	}
	reg := prometheus.NewRegistry()
	rt, err = runtime.New(cfg, engine, inv, est, log, reg)
	if err != nil {
		_ = inv.Close()
		return nil, nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := rt.StartOrRetry(sctx); err != nil {
		if !errors.Is(err, runtime.ErrEngineUnreachable) {
			_ = rt.Shutdown(context.Background())
			_ = inv.Close()
			return nil, nil, nil, fmt.Errorf("start runtime: %w", err)
		}
		// An engine that is down at boot (dockerd still starting, a wrong
		// DOCKER_HOST) is fixed without touching the orchestrator: serve
		// with capacity 0 meanwhile, so /healthz, /status and
		// GetOrchestrator tell the truth, and come up when it answers.
		log.Error("docker engine unreachable: serving docker-managed models with capacity 0 and retrying in the background; "+
			"start dockerd or point DOCKER_HOST at it, no restart needed (see /status/runtime)", "err", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status/runtime", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rt.Status())
	})
	mux.Handle("GET /metrics/runtime", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+cfg.StopTimeout+20*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			log.Error("runtime shutdown", "err", err)
		}
		_ = engine.Close()
		_ = inv.Close()
	}
	return rt, mux, stop, nil
}

func pipelineSlugs() []string {
	var out []string
	for _, p := range capability.Batch {
		out = append(out, p.Slug)
	}
	return append(out, "live-video-to-video")
}

// withRuntimeRoutes serves extra's routes in front of the operator endpoints.
func withRuntimeRoutes(ai, extra http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status/runtime" || r.URL.Path == "/metrics/runtime" {
			extra.ServeHTTP(w, r)
			return
		}
		ai.ServeHTTP(w, r)
	})
}
