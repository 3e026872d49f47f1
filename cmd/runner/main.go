// Command runner is the CPU reference runner: ai-runner's HTTP API for one
// pipeline and model, without a GPU. See orchestrator/runner/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(1)
	}
}

// env returns the variable or def, so flags default to ai-runner's env vars.
func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return f
	}
	return def
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("runner", flag.ContinueOnError)
	var cfg runner.Config
	fs.StringVar(&cfg.Pipeline, "pipeline", env("PIPELINE", ""), "pipeline to serve, e.g. text-to-image (env PIPELINE)")
	fs.StringVar(&cfg.ModelID, "model-id", env("MODEL_ID", ""), "model id to report and guard on (env MODEL_ID)")
	fs.StringVar(&cfg.AuthToken, "auth-token", env("AUTH_TOKEN", ""), "bearer token generate routes require; empty = none (env AUTH_TOKEN)")
	fs.StringVar(&cfg.Version, "version", env("VERSION", "undefined"), "version reported by /version (env VERSION)")
	fs.DurationVar(&cfg.Latency.Mean, "mean-latency", envDuration("RUNNER_MEAN_LATENCY", time.Second), "mean inference time per job (env RUNNER_MEAN_LATENCY)")
	fs.DurationVar(&cfg.Latency.Jitter, "jitter", envDuration("RUNNER_JITTER", 200*time.Millisecond), "uniform ± jitter around the mean (env RUNNER_JITTER)")
	fs.Float64Var(&cfg.Latency.FailureRate, "failure-rate", envFloat("RUNNER_FAILURE_RATE", 0), "fraction of jobs answered with a 500 pipeline error (env RUNNER_FAILURE_RATE)")
	fs.DurationVar(&cfg.Latency.LoadTime, "load-time", envDuration("RUNNER_LOAD_TIME", 0), "time /health reports LOADING after start (env RUNNER_LOAD_TIME)")
	fs.IntVar(&cfg.Workers, "workers", 1, "concurrent inference jobs (ai-runner runs one)")
	addr := fs.String("addr", ":8000", "listen address")
	verbose := fs.Bool("verbose", env("VERBOSE_LOGGING", "") == "1", "debug logging (env VERBOSE_LOGGING=1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	r, err := runner.New(cfg)
	if err != nil {
		return err
	}
	defer r.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	cfg.Logger.Info("runner listening", "addr", ln.Addr().String(), "pipeline", cfg.Pipeline, "model_id", cfg.ModelID)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
