// Command runner is the CPU reference runner: ai-runner's HTTP API for one
// pipeline and model, without a GPU. See orchestrator/runner/README.md.
//
// Its settings default to ai-runner's environment variables (PIPELINE,
// MODEL_ID, VERSION, …), so the orchestrator's Docker runtime starts it like
// the real runner; a malformed variable is an error, never silently dropped.
// The bearer token comes from $AUTH_TOKEN or -auth-token-file only: a flag
// value shows in ps.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/internal/httpserve"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

func main() {
	cli.Main("runner", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stderr, nil) })
}

// envDefaults are the ai-runner environment variables each flag defaults to.
var envDefaults = []struct{ flag, env string }{
	{"pipeline", "PIPELINE"}, {"model-id", "MODEL_ID"}, {"version", "VERSION"},
	{"mean-latency", "RUNNER_MEAN_LATENCY"}, {"jitter", "RUNNER_JITTER"},
	{"failure-rate", "RUNNER_FAILURE_RATE"}, {"load-time", "RUNNER_LOAD_TIME"},
	{"live-latency", "RUNNER_LIVE_LATENCY"}, {"live-out-fps", "RUNNER_LIVE_OUT_FPS"},
	{"live-stall-after", "RUNNER_LIVE_STALL_AFTER"}, {"live-stall-for", "RUNNER_LIVE_STALL_FOR"},
	{"live-drop-every", "RUNNER_LIVE_DROP_EVERY"}, {"live-passthrough", "RUNNER_LIVE_PASSTHROUGH"},
	{"live-no-output", "RUNNER_LIVE_NO_OUTPUT"}, {"live-event-interval", "RUNNER_LIVE_EVENT_INTERVAL"},
}

// run serves until ctx ends; ready, when not nil, receives the bound address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("runner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg runner.Config
	var logCfg cli.Log
	fs.StringVar(&cfg.Pipeline, "pipeline", "", "pipeline to serve, e.g. text-to-image (env PIPELINE)")
	fs.StringVar(&cfg.ModelID, "model-id", "", "model id to report and guard on (env MODEL_ID)")
	tokenFile := fs.String("auth-token-file", "", "file holding the bearer token generate routes require (else $AUTH_TOKEN; neither: no token)")
	cli.Refused(fs, "auth-token", "put the token in $AUTH_TOKEN or a file named by -auth-token-file")
	fs.StringVar(&cfg.Version, "version", "undefined", "version reported by /version (env VERSION)")
	fs.DurationVar(&cfg.Latency.Mean, "mean-latency", time.Second, "mean inference time per job (env RUNNER_MEAN_LATENCY)")
	fs.DurationVar(&cfg.Latency.Jitter, "jitter", 200*time.Millisecond, "uniform ± jitter around the mean (env RUNNER_JITTER)")
	fs.Float64Var(&cfg.Latency.FailureRate, "failure-rate", 0, "fraction of jobs answered with a 500 pipeline error (env RUNNER_FAILURE_RATE)")
	fs.DurationVar(&cfg.Latency.LoadTime, "load-time", 0, "time /health reports LOADING after start (env RUNNER_LOAD_TIME)")
	fs.IntVar(&cfg.Workers, "workers", 1, "concurrent inference jobs (ai-runner runs one)")
	fs.DurationVar(&cfg.Live.Latency, "live-latency", 0, "live-video-to-video: time from an input segment to its output segment (env RUNNER_LIVE_LATENCY)")
	fs.IntVar(&cfg.Live.OutFPS, "live-out-fps", 0, "live-video-to-video: drop frames to output this rate, 0 = input rate (env RUNNER_LIVE_OUT_FPS)")
	fs.DurationVar(&cfg.Live.StallAfter, "live-stall-after", 0, "live-video-to-video: output stalls this long into a stream (env RUNNER_LIVE_STALL_AFTER)")
	fs.DurationVar(&cfg.Live.StallFor, "live-stall-for", 0, "live-video-to-video: length of the stall, 0 = none (env RUNNER_LIVE_STALL_FOR)")
	fs.IntVar(&cfg.Live.DropEvery, "live-drop-every", 0, "live-video-to-video: drop every Nth output segment, 0 = none (env RUNNER_LIVE_DROP_EVERY)")
	fs.BoolVar(&cfg.Live.Passthrough, "live-passthrough", false, "live-video-to-video: output the input untransformed (env RUNNER_LIVE_PASSTHROUGH)")
	fs.BoolVar(&cfg.Live.NoOutput, "live-no-output", false, "live-video-to-video: publish no output (env RUNNER_LIVE_NO_OUTPUT)")
	fs.DurationVar(&cfg.Live.EventInterval, "live-event-interval", 5*time.Second, "live-video-to-video: status event period, at most 30s (env RUNNER_LIVE_EVENT_INTERVAL)")
	addr := fs.String("listen", ":8000", "listen address of ai-runner's API, /healthz and /metrics")
	cli.Alias(fs, "addr", "listen")
	logCfg.RegisterFlags(fs, "json")
	cli.BoolAlias(fs, "verbose", "log.level", "debug")

	var errs []error
	for _, d := range envDefaults {
		if v, ok := os.LookupEnv(d.env); ok {
			if err := fs.Set(d.flag, v); err != nil {
				errs = append(errs, fmt.Errorf("$%s=%q: %w (or give -%s)", d.env, v, err, d.flag))
			}
		}
	}
	if os.Getenv("VERBOSE_LOGGING") == "1" {
		_ = fs.Set("log.level", "debug")
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	listenSet := false
	fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" || f.Name == "addr" })
	if cfg.Pipeline == "live-video-to-video" && !listenSet {
		*addr = ":8900" // go-livepeer's live runner port (ai/worker/docker.go:60)
	}
	token, err := cli.Secret(*tokenFile, "AUTH_TOKEN")
	if err != nil {
		return fmt.Errorf("-auth-token-file: %w", err)
	}
	cfg.AuthToken = token
	cfg.Logger = logCfg.New(stderr)
	cli.WarnDeprecated(fs, cfg.Logger)

	r, err := runner.New(cfg)
	if err != nil {
		return err
	}
	defer r.Close() // after the listener has drained
	h := httpserve.Observe("runner", r.Handler(), prometheus.NewRegistry(), httpserve.OK)
	// A job may run as long as go-livepeer's runner call deadline (15 min)
	// and its upload (an image-to-video input) take minutes on a slow link.
	srv := httpserve.NewServer(h, 15*time.Minute)
	srv.ReadTimeout = 5 * time.Minute
	cfg.Logger.Info("runner", "pipeline", cfg.Pipeline, "model_id", cfg.ModelID)
	return httpserve.Run(ctx, srv, *addr, 8*time.Second, cfg.Logger, ready)
}
