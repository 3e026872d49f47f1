package runtime

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
)

// Config is one runtime instance. Defaults live in RegisterFlags and
// DefaultConfig; Validate rejects what would fail later in a confusing way.
type Config struct {
	// InstanceID goes into every container's creator_id label. Two
	// orchestrators on one engine must use different ids: boot cleanup
	// removes only containers carrying this id (go-livepeer #3754).
	InstanceID string
	// Image is the runner image for models that do not name their own.
	Image string
	// ModelsDir is the host directory bind-mounted at /models in every
	// container (a host path: containers are siblings, not children). Empty
	// mounts nothing.
	ModelsDir string
	// HostIP is where container ports are published; loopback keeps runners
	// reachable only through the orchestrator.
	HostIP string
	// PortFirst..PortLast is the host port range for runner containers.
	PortFirst, PortLast int

	HealthInterval time.Duration // between /health checks of a ready runner
	HealthTimeout  time.Duration // per /health call
	HealthFailures int           // consecutive failed checks that end a runner
	LoadPoll       time.Duration // between /health checks while loading
	LoadTimeout    time.Duration // LOADING longer than this is a failure

	RestartBackoff    time.Duration // first delay before re-creating a failed runner
	RestartBackoffMax time.Duration // the delay doubles up to this
	CrashLoopAfter    int           // consecutive failures that mark a runner crash-looping
	StableAfter       time.Duration // ready this long resets the failure count

	StopTimeout  time.Duration // SIGTERM grace before SIGKILL when stopping a container
	DrainTimeout time.Duration // how long Shutdown waits for in-flight jobs before stopping
	IdleTimeout  time.Duration // a cold (non-warm) runner idle this long is stopped
	LogTailLines int           // container log lines kept on failure

	// GPUPolicy is "pack" or "spread" (see gpu.Policy); VRAMHeadroom is kept
	// free on every GPU.
	GPUPolicy    string
	VRAMHeadroom uint64

	Models []Model
}

// Model is one (pipeline, model) to serve, as aiModels.json describes it.
type Model struct {
	Pipeline capability.Pipeline
	ModelID  string
	// Warm runners start at boot and are kept running; cold ones start on
	// the first reservation (which is refused while they load: a paid
	// request never waits minutes for a cold start) and stop when idle.
	Warm bool
	// Containers is how many runner containers to keep (replicas).
	Containers int
	// Concurrency is how many jobs one runner takes at once (vLLM batches;
	// diffusion runners take one). Capacity = ready runners × Concurrency.
	Concurrency int
	// OptimizationFlags become container env, e.g. SFAST=true.
	OptimizationFlags map[string]string
	// Image overrides Config.Image for this model.
	Image string
	// VRAM is the model's VRAM estimate in bytes; 0 uses the runtime's
	// estimates (gpu.DefaultEstimates or -vram-estimates).
	VRAM uint64
	// URL makes this an external runner: not managed, only health-checked;
	// Token is the bearer token it expects.
	URL, Token string
}

func (m Model) key() modelKey { return modelKey{m.Pipeline.Slug, m.ModelID} }

func (m Model) external() bool { return m.URL != "" }

// DefaultConfig is RegisterFlags' defaults, for callers without flags.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	return c
}

// RegisterFlags registers every field but Models and sets the defaults.
// The timeouts follow go-livepeer's (health 5 s, 2 failures, load 3 min,
// stop 8 s) so operators' expectations carry over.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.InstanceID, "runtime.instance-id", "", "id in the creator_id label of this orchestrator's containers; must differ between orchestrators sharing a Docker engine (default: hostname-port of the orchestrator)")
	fs.StringVar(&c.Image, "runtime.image", "livepeer/ai-runner:latest", "runner image for models that do not set their own")
	fs.StringVar(&c.ModelsDir, "runtime.models-dir", "", "host directory bind-mounted at /models in runner containers (empty: none)")
	fs.StringVar(&c.HostIP, "runtime.host-ip", "127.0.0.1", "host address runner ports are published on")
	fs.IntVar(&c.PortFirst, "runtime.port-first", 20000, "first host port for runner containers")
	fs.IntVar(&c.PortLast, "runtime.port-last", 20999, "last host port for runner containers")
	fs.DurationVar(&c.HealthInterval, "runtime.health-interval", 5*time.Second, "time between /health checks of a ready runner")
	fs.DurationVar(&c.HealthTimeout, "runtime.health-timeout", 5*time.Second, "timeout of one /health check")
	fs.IntVar(&c.HealthFailures, "runtime.health-failures", 2, "consecutive failed /health checks (with no job in flight) that end a runner")
	fs.DurationVar(&c.LoadPoll, "runtime.load-poll", 500*time.Millisecond, "time between /health checks while a runner loads")
	fs.DurationVar(&c.LoadTimeout, "runtime.load-timeout", 3*time.Minute, "a runner still LOADING after this has failed")
	fs.DurationVar(&c.RestartBackoff, "runtime.restart-backoff", time.Second, "first delay before a failed runner is re-created; doubles each failure")
	fs.DurationVar(&c.RestartBackoffMax, "runtime.restart-backoff-max", time.Minute, "longest delay between re-creations")
	fs.IntVar(&c.CrashLoopAfter, "runtime.crash-loop-after", 5, "consecutive failures after which a runner is reported crash-looping")
	fs.DurationVar(&c.StableAfter, "runtime.stable-after", time.Minute, "a runner ready this long starts again from zero failures")
	fs.DurationVar(&c.StopTimeout, "runtime.stop-timeout", 8*time.Second, "grace between SIGTERM and SIGKILL when stopping a runner")
	fs.DurationVar(&c.DrainTimeout, "runtime.drain-timeout", 10*time.Second, "at shutdown, how long to wait for in-flight jobs before stopping runners")
	fs.DurationVar(&c.IdleTimeout, "runtime.idle-timeout", 10*time.Minute, "a cold (non-warm) runner idle this long is stopped")
	fs.IntVar(&c.LogTailLines, "runtime.log-tail", 20, "container log lines kept and logged when a runner fails")
	fs.StringVar(&c.GPUPolicy, "runtime.gpu-policy", "pack", "placement among GPUs with room: pack (fullest that fits) or spread (emptiest)")
	fs.Func("runtime.vram-headroom", "VRAM kept free on every GPU, e.g. 2GiB (default 1GiB)", func(s string) error {
		b, err := gpu.ParseBytes(s)
		c.VRAMHeadroom = b
		return err
	})
	c.VRAMHeadroom = 1 << 30
}

// Validate checks the config; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if c.InstanceID == "" {
		errs = append(errs, errors.New("instance id is empty"))
	}
	if c.PortFirst < 1 || c.PortLast > 65535 || c.PortFirst > c.PortLast {
		errs = append(errs, fmt.Errorf("port range %d-%d is not a valid range", c.PortFirst, c.PortLast))
	}
	for name, d := range map[string]time.Duration{"health interval": c.HealthInterval, "health timeout": c.HealthTimeout,
		"load poll": c.LoadPoll, "load timeout": c.LoadTimeout, "restart backoff": c.RestartBackoff, "stop timeout": c.StopTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.RestartBackoffMax < c.RestartBackoff {
		errs = append(errs, errors.New("restart backoff max is below restart backoff"))
	}
	if c.HealthFailures < 1 || c.CrashLoopAfter < 1 {
		errs = append(errs, errors.New("health failures and crash-loop-after must be at least 1"))
	}
	if c.GPUPolicy != "pack" && c.GPUPolicy != "spread" {
		errs = append(errs, fmt.Errorf("gpu policy %q: want pack or spread", c.GPUPolicy))
	}
	seen := map[modelKey]bool{}
	for i, m := range c.Models {
		if m.Pipeline.Slug == "" || m.ModelID == "" {
			errs = append(errs, fmt.Errorf("model %d: pipeline and model id are required", i))
			continue
		}
		if seen[m.key()] {
			errs = append(errs, fmt.Errorf("model %d: %s %s listed twice", i, m.Pipeline.Slug, m.ModelID))
		}
		seen[m.key()] = true
		if m.Containers < 0 || m.Concurrency < 0 {
			errs = append(errs, fmt.Errorf("model %d (%s): negative containers or concurrency", i, m.ModelID))
		}
		if !m.external() && m.Image == "" && c.Image == "" {
			errs = append(errs, fmt.Errorf("model %d (%s): no image", i, m.ModelID))
		}
	}
	return errors.Join(errs...)
}
