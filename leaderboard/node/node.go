// Package node is the leaderboard program (binary leaderboard): its flags,
// the store (open → migrate), rollup maintenance and the API behind the
// house HTTP server. cmd/leaderboard only wires signals and the exit status.
package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/chstore"
	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/internal/httpserve"
	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/rollup"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/schemas"
)

// Config is the leaderboard's command line; secrets come from the
// environment (LoadSecrets), never from flags.
type Config struct {
	Log          cli.Log
	serve        cli.ReadServer
	ch           chclient.Config
	secret       string
	maxPostBytes int64
	keysFile     string
	plausible    api.Plausibility
	maxWindow    time.Duration
	maxStale     time.Duration
	cacheEntries int
	rollups      rollup.Config
}

// RegisterFlags defines every flag with its default.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Log.RegisterFlags(fs, "json")
	c.serve.RegisterFlags(fs, cli.ReadServerDefaults{
		Listen:            ":8080",
		WindowUsage:       "default look-back when a request gives no since (leaderboard-serverless START_TIME_WINDOW)",
		QueryTimeoutUsage: "store time allowed to one request",
		Migrate:           true,
		MigrateUsage:      "apply the schema migrations at start",
	})
	c.ch.RegisterFlags(fs, "clickhouse.")
	c.ch.RegisterStoreFlag(fs)
	fs.Int64Var(&c.maxPostBytes, "post.max-body-bytes", api.DefaultMaxPostBytes, "largest post_stats body accepted (413 above)")
	fs.StringVar(&c.keysFile, "post.keys-file", "", "JSON file {\"<key id>\": {\"secret\": \"…\", \"regions\": [\"FRA\"]}} of per-tester post_stats keys (signed mode with timestamp and nonce); a key posts only for its regions; \"gateway\": true lets it post a gateway's own jobs (source gateway)")
	fs.DurationVar(&c.plausible.MinRTT, "post.min-rtt", 50*time.Millisecond, "shortest round_trip_time a successful post may claim (400 below)")
	fs.DurationVar(&c.plausible.MaxRTT, "post.max-rtt", 10*time.Minute, "longest round_trip_time a post may claim (400 above)")
	fs.DurationVar(&c.plausible.MaxAge, "post.max-age", 7*24*time.Hour, "oldest timestamp a post may carry (400 older; capped at -retention when set)")
	fs.DurationVar(&c.plausible.MaxFuture, "post.max-future", 5*time.Minute, "how far ahead of the server clock a post's timestamp may be (400 beyond)")
	fs.DurationVar(&c.maxWindow, "max-window", 31*24*time.Hour, "longest since..until a read may ask for (400 beyond)")
	fs.DurationVar(&c.maxStale, "cache.max-stale", 24*time.Hour, "oldest cached answer served (marked stale) while the store is down")
	fs.IntVar(&c.cacheEntries, "cache.entries", 1024, "distinct requests whose last good answer is kept for store outages")
	c.rollups.RegisterFlags(fs)
}

// Validate lists every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.ch.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("clickhouse: %w", err))
	}
	if err := c.serve.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.maxWindow < c.serve.Window {
		errs = append(errs, errors.New("-max-window must be at least -window"))
	}
	if c.plausible.MinRTT <= 0 || c.plausible.MaxRTT <= c.plausible.MinRTT || c.plausible.MaxAge <= 0 || c.plausible.MaxFuture <= 0 {
		errs = append(errs, errors.New("-post.min-rtt, -post.max-rtt, -post.max-age and -post.max-future must be positive, with max-rtt above min-rtt"))
	}
	if c.maxStale <= 0 || c.cacheEntries <= 0 {
		errs = append(errs, errors.New("-cache.max-stale and -cache.entries must be positive"))
	}
	if err := c.rollups.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Main parses args, reads the secrets from the environment and runs the
// leaderboard until ctx ends, logging to stderr.
func Main(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	var cfg Config
	fs := flag.NewFlagSet("leaderboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg.LoadSecrets()
	log := cfg.Log.New(stderr)
	cli.WarnDeprecated(fs, log)
	return Run(ctx, cfg, log, ready)
}

// LoadSecrets reads the ClickHouse password and leaderboard-serverless's
// post_stats SECRET from the environment (ps shows flags).
func (c *Config) LoadSecrets() {
	c.ch.Password = os.Getenv("CLICKHOUSE_PASSWORD")
	c.secret = os.Getenv("SECRET")
}

// Run serves until ctx ends, then drains in-flight requests. ready, when not
// nil, receives the bound address once the server listens (tests use :0).
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready chan<- string) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	keys, err := loadKeys(cfg.keysFile, log)
	if err != nil {
		return err
	}
	st, closeStore, err := OpenStore(ctx, cfg.ch, cfg.serve.Migrate, cfg.serve.QueryTimeout, log)
	if err != nil {
		return err
	}
	defer closeStore()
	if cfg.rollups.Rebuild != "" {
		return rollup.Rebuild(ctx, cfg.rollups, st, log)
	}
	defer rollup.StartRetention(ctx, cfg.rollups, st, log)()
	plausible := cfg.plausible
	if r := cfg.rollups.RetentionRaw; r > 0 && r < plausible.MaxAge {
		// A post older than the raw retention would be dropped at once.
		plausible.MaxAge = r
	}
	handler := api.New(api.Config{Window: cfg.serve.Window, QueryTimeout: cfg.serve.QueryTimeout, Secret: cfg.secret, MaxPostBytes: cfg.maxPostBytes, Keys: keys,
		Plausibility: plausible, MaxWindow: cfg.maxWindow,
		MaxStale: cfg.maxStale, CacheEntries: cfg.cacheEntries, Logger: log}, st)
	srv := httpserve.NewServer(handler, cfg.serve.QueryTimeout+10*time.Second)
	return httpserve.Run(ctx, srv, cfg.serve.Listen, cfg.serve.ShutdownTimeout, log, ready)
}

// OpenStore is the read side's store: open the ClickHouse server or the
// embedded store, apply the migrations when migrate is set, and wrap the
// connection in the leaderboard store (explorer-api opens its store the
// same way). closeStore closes the connection.
func OpenStore(ctx context.Context, ch chclient.Config, migrate bool, queryTimeout time.Duration, log *slog.Logger) (st *store.ClickHouse, closeStore func(), err error) {
	conn, err := chstore.Open(ctx, ch)
	if err != nil {
		return nil, nil, fmt.Errorf("store (%s): %w", chstore.Describe(ch), err)
	}
	log.Info("store open", "store", chstore.Describe(ch))
	if migrate {
		applied, err := schemas.Migrate(ctx, conn, schemas.Options{Database: ch.Database})
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		log.Info("schema up to date", "database", ch.Database, "applied", applied)
	}
	if st, err = store.NewClickHouse(conn, ch.Database, queryTimeout); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return st, func() { conn.Close() }, nil
}

// loadKeys reads the per-tester key file; secrets live in a file, never in
// flags (ps shows flags). Each key is {"secret": "…", "regions": ["FRA"]}
// and posts only for its regions. The old form {"<id>": "<secret>"} still
// loads, owning every region, with a warning per key.
func loadKeys(path string, log *slog.Logger) (map[string]api.PostKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("post keys: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("post keys %s: want a JSON object of key id to {\"secret\", \"regions\"}: %w", path, err)
	}
	keys := make(map[string]api.PostKey, len(raw))
	for id, v := range raw {
		var k api.PostKey
		var old string
		if err := json.Unmarshal(v, &old); err == nil {
			log.Warn("post key in the old form owns every region: give it {\"secret\", \"regions\"}", "key", id, "file", path)
			k.Secret = old
		} else {
			var entry struct {
				Secret  string   `json:"secret"`
				Regions []string `json:"regions"`
				// Gateway: the key may post "source": "gateway" rows.
				Gateway bool `json:"gateway"`
			}
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&entry); err != nil {
				return nil, fmt.Errorf("post keys %s: key %q: want {\"secret\": \"…\", \"regions\": [\"FRA\"]}: %w", path, id, err)
			}
			if len(entry.Regions) == 0 {
				return nil, fmt.Errorf("post keys %s: key %q has no regions: list the regions its tester posts for", path, id)
			}
			for _, code := range entry.Regions {
				reg, ok := regions.Lookup(code)
				if !ok || reg.Code == regions.Global || !reg.Has(regions.AI) {
					return nil, fmt.Errorf("post keys %s: key %q: region %q is not an AI region (one of %s)", path, id, code, strings.Join(regions.Codes(regions.AI), ", "))
				}
				k.Regions = append(k.Regions, reg.Code)
			}
			k.Secret, k.Gateway = entry.Secret, entry.Gateway
		}
		if id == "" || len(k.Secret) < 16 {
			return nil, fmt.Errorf("post keys %s: key %q needs an id and a secret of at least 16 characters", path, id)
		}
		keys[id] = k
	}
	return keys, nil
}
