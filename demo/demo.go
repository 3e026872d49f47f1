// Package demo runs the whole loop on one machine: a private ClickHouse
// server, four reference orchestrators with different latency and failure
// profiles, regional testers for two regions, and the leaderboard API. After
// each round it prints the ranked leaderboard. Ctrl-C stops everything and
// leaves no process behind (children are killed with the demo even if it
// crashes: each gets SIGKILL when its parent dies).
package demo

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/internal/chembed"
	"github.com/lpgauge/lpgauge/internal/chserver"
	"github.com/lpgauge/lpgauge/internal/cli"
)

// Config is the demo's command line.
type Config struct {
	BinDir          string
	DataDir         string
	LeaderboardAddr string
	Interval        time.Duration
	Pipeline        string
	Model           string
	Regions         string
	Rounds          int
	Store           string
	Log             cli.Log
	// Out receives the progress lines and tables (os.Stdout by default).
	Out io.Writer
	// OnBoard, when set, sees every printed board; returning true stops the
	// demo (the end-to-end test uses it to wait for the promised ranking).
	OnBoard func([]scoreRow) bool
	// OnLive, when set, sees every live table (/api/live_stats, issue
	// #16; nil when no live session is scored yet) printed with a board;
	// the demo stops when OnBoard and OnLive both return true.
	OnLive func([]liveRow) bool
}

// RegisterFlags defines every flag with its default.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	// Warnings only by default: the demo's own output is the tables.
	c.Log.Level = slog.LevelWarn
	c.Log.RegisterFlags(fs, "text")
	fs.StringVar(&c.BinDir, "bin", "bin", "folder holding the built binaries (make build)")
	fs.StringVar(&c.DataDir, "dir", ".demo", "folder for the demo's ClickHouse data and logs (git-ignored)")
	fs.StringVar(&c.LeaderboardAddr, "leaderboard-addr", "127.0.0.1:8080", "where the leaderboard API listens (a free port is picked if taken)")
	fs.DurationVar(&c.Interval, "interval", 20*time.Second, "time between test rounds of each regional tester")
	fs.StringVar(&c.Pipeline, "pipeline", "Text to image", "pipeline the testers probe and the table shows")
	fs.StringVar(&c.Model, "model", "ByteDance/SDXL-Lightning", "model the testers probe and the table shows")
	fs.StringVar(&c.Regions, "regions", "FRA,LAX", "regions to run a tester for")
	fs.IntVar(&c.Rounds, "rounds", 0, "stop after this many printed leaderboards (0 = run until Ctrl-C)")
	store := os.Getenv("LPGAUGE_STORE")
	if store == "" {
		store = "embedded"
	}
	fs.StringVar(&c.Store, "store", store, "where results live: embedded (chDB inside the demo process, no server) or clickhouse (a private ClickHouse server and one process per component); default from $LPGAUGE_STORE")
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// Run starts the fleet, the testers and the store side, prints the board
// after each round and stops everything (children first, then the store)
// when ctx ends, Rounds boards were printed or OnBoard says so.
func Run(ctx context.Context, cfg Config) error {
	binDir, dataDir := abs(cfg.BinDir), abs(cfg.DataDir)
	logDir := filepath.Join(dataDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	need := []string{"orchestrator"}
	switch cfg.Store {
	case "clickhouse":
		need = append(need, "tester", "leaderboard", "explorer-api")
	case "embedded":
		// Before any orchestrator starts: a build without the chdb tag, or a
		// missing libchdb, is one sentence saying what to do.
		if err := chembed.Load(); err != nil {
			return fmt.Errorf("-store embedded: %w; or run with -store clickhouse", err)
		}
	default:
		return fmt.Errorf("-store %q: want embedded (chDB in this process) or clickhouse (a private ClickHouse server)", cfg.Store)
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("binary %s missing in %s: run `make build` (or `make demo`)", b, binDir)
		}
	}
	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, "demo: "+format+"\n", args...) }
	regionCodes := strings.Split(cfg.Regions, ",")
	for i := range regionCodes {
		regionCodes[i] = strings.ToUpper(strings.TrimSpace(regionCodes[i]))
	}

	sup := &supervisor{logDir: logDir}
	defer func() { say("stopping components"); sup.stopAll(15 * time.Second) }()

	slug := "text-to-image"
	var targets []string
	for _, p := range fleet {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		opAddr, err := freeAddr()
		if err != nil {
			return err
		}
		args := orchestratorArgs(p, addr, opAddr, slug, cfg.Model)
		if _, err := sup.start("orchestrator-"+p.Name, filepath.Join(binDir, "orchestrator"), args...); err != nil {
			return err
		}
		if err := waitHTTP(ctx, "http://"+addr+"/healthz", 30*time.Second); err != nil {
			return fmt.Errorf("orchestrator %s: %w (log: %s)", p.Name, err, filepath.Join(logDir, "orchestrator-"+p.Name+".log"))
		}
		say("orchestrator %-6s %s at http://%s (server time ~%s, failure rate %.0f%%; status http://%s/status)", p.Name, p.Address, addr, p.MeanServer, p.FailureRate*100, opAddr)
		targets = append(targets, p.Address+"=http://"+addr)
	}

	lbAddr := cfg.LeaderboardAddr
	if strings.HasSuffix(lbAddr, ":0") || !listenable(lbAddr) {
		var err error
		if lbAddr, err = freeAddr(); err != nil {
			return err
		}
	}
	webAddr, err := freeAddr()
	if err != nil {
		return err
	}
	fl := fleetSpec{targets: targets, models: slug + ":" + cfg.Model + ",live-video-to-video:" + liveModel, regions: regionCodes, interval: cfg.Interval, lbAddr: lbAddr, webAddr: webAddr}
	var stopStore func()
	switch cfg.Store {
	case "clickhouse":
		stopStore, err = startServerStore(ctx, cfg, dataDir, logDir, binDir, sup, fl, say)
	case "embedded":
		stopStore, err = startEmbeddedStore(ctx, dataDir, logDir, fl, say)
	}
	if stopStore != nil {
		defer stopStore()
	}
	if err != nil {
		return err
	}
	base := "http://" + lbAddr
	say("leaderboard API at %s", base)
	say("web leaderboard at http://%s/", webAddr)
	say("logs in %s; Ctrl-C stops everything", logDir)
	say("try: curl '%s/api/aggregated_stats?pipeline=%s&model=%s'", base, url.QueryEscape(cfg.Pipeline), cfg.Model)

	died := sup.exited()
	printed := 0
	lastRows := 0
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	lastPrint := time.Time{}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return nil
		case c := <-died:
			return fmt.Errorf("%s exited unexpectedly (%v); see %s", c.name, c.proc.Err(), filepath.Join(logDir, c.name+".log"))
		case <-tick.C:
		}
		rows, err := fetchBoard(ctx, base, cfg.Pipeline, cfg.Model)
		if err != nil {
			say("leaderboard not ready: %v", err)
			continue
		}
		// Print once every orchestrator has a score in every region, then
		// after each following round.
		if len(rows) < len(fleet)*len(regionCodes) {
			continue
		}
		if len(rows) == lastRows && time.Since(lastPrint) < cfg.Interval {
			continue
		}
		lastRows, lastPrint = len(rows), time.Now()
		printBoard(out, rows, cfg.Pipeline, cfg.Model)
		// The live table, once live sessions are scored (a fleet serving
		// live-video-to-video and testers probing it).
		live, err := fetchLive(ctx, base)
		if err != nil {
			say("live table not ready: %v", err)
		} else if len(live) > 0 {
			printLive(out, live)
		}
		printed++
		if cfg.OnBoard != nil && cfg.OnBoard(rows) && (cfg.OnLive == nil || cfg.OnLive(live)) {
			return nil
		}
		if cfg.Rounds > 0 && printed >= cfg.Rounds {
			return nil
		}
	}
}

// fleetSpec is what the store-side components need to know.
type fleetSpec struct {
	targets  []string // address=serviceURI
	models   string   // pipeline:model
	regions  []string
	interval time.Duration
	lbAddr   string
	webAddr  string
}

// startServerStore runs a private ClickHouse server and the tester,
// leaderboard and explorer-api binaries against it.
func startServerStore(ctx context.Context, cfg Config, dataDir, logDir, binDir string, sup *supervisor, fl fleetSpec, say func(string, ...any)) (func(), error) {
	say("starting ClickHouse (data in %s)", filepath.Join(dataDir, "clickhouse"))
	ch, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(dataDir, "clickhouse")})
	if err != nil {
		return nil, err
	}
	stop := func() {
		// Components first (they flush into ClickHouse), then the server.
		sup.stopAll(15 * time.Second)
		say("stopping ClickHouse")
		ch.Stop()
	}
	chFlags := []string{"-clickhouse.addr", ch.TCPAddr, "-clickhouse.database", "lpgauge"}
	if _, err := sup.start("leaderboard", filepath.Join(binDir, "leaderboard"), append([]string{"-listen", fl.lbAddr}, chFlags...)...); err != nil {
		return stop, err
	}
	if err := waitHTTP(ctx, "http://"+fl.lbAddr+"/healthz", 30*time.Second); err != nil {
		return stop, fmt.Errorf("leaderboard: %w (log: %s)", err, filepath.Join(logDir, "leaderboard.log"))
	}
	if _, err := sup.start("explorer-api", filepath.Join(binDir, "explorer-api"), append([]string{"-listen", fl.webAddr}, chFlags...)...); err != nil {
		return stop, err
	}
	if err := waitHTTP(ctx, "http://"+fl.webAddr+"/healthz", 30*time.Second); err != nil {
		return stop, fmt.Errorf("explorer-api: %w (log: %s)", err, filepath.Join(logDir, "explorer-api.log"))
	}
	for _, region := range fl.regions {
		metrics, err := freeAddr()
		if err != nil {
			return stop, err
		}
		args := append([]string{
			"-region", region,
			"-orchestrators", strings.Join(fl.targets, ","),
			"-models", fl.models,
			"-interval", fl.interval.String(),
			"-simulate-rtt",
			"-network", "offchain",
			"-listen", metrics,
			"-spool-dir", filepath.Join(dataDir, "spool-"+region),
			"-live.duration", demoLive.Duration.String(),
		}, chFlags...)
		if _, err := sup.start("tester-"+region, filepath.Join(binDir, "tester"), args...); err != nil {
			return stop, err
		}
		say("tester %s probing %d orchestrators every %s (metrics http://%s/metrics)", region, len(fl.targets), fl.interval, metrics)
	}
	return stop, nil
}

// orchestratorArgs are the reference orchestrator's flags for one profile;
// its operator endpoints (/status, /metrics) listen on opAddr.
func orchestratorArgs(p profile, addr, opAddr, slug, model string) []string {
	return []string{
		"-httpAddr", addr,
		"-serviceAddr", addr,
		"-operator-addr", opAddr,
		"-eth.addr", p.Address,
		"-aiModels", fmt.Sprintf("%s:%s:true,live-video-to-video:%s:true", slug, model, liveModel),
		"-live-latency", p.LiveLatency.String(),
		"-live-out-fps", fmt.Sprint(p.LiveOutFPS),
		"-live-stall-after", p.LiveStallAfter.String(),
		"-live-stall-for", p.LiveStallFor.String(),
		"-mean-latency", p.MeanServer.String(),
		"-jitter", p.Jitter.String(),
		"-failure-rate", fmt.Sprint(p.FailureRate),
		"-capacity", fmt.Sprint(p.Capacity),
	}
}
