package node

import (
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/robfig/cron/v3"

	"github.com/lpgauge/lpgauge/gateway/discovery"
	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// Config is the tester's command line, with defaults in RegisterFlags.
type Config struct {
	Region        string
	TesterKey     string
	TesterKeys    string // directory of sender keys (key pool); empty: -tester-key pays
	Orchestrators string
	Models        string
	Schedule      string
	Interval      time.Duration
	Once          bool
	NoStore       bool
	SimulateRTT   bool
	Listen        string
	Concurrency   int
	RoundDeadline time.Duration
	Timeouts      probe.Timeouts
	MaxResponse   int64
	VerifyTLS     bool
	StallAfter    time.Duration // probe.Config.StallAfter
	Live          probe.LiveConfig
	LiveSize      string // -live.size WxH, parsed into Live
	BatchSize     int
	FlushInterval time.Duration
	ShutdownWait  time.Duration
	SpoolDir      string
	PostStatsURL  string
	PostStatsFile string // file holding the post_stats HMAC secret (else $POST_STATS_SECRET)
	Control       string
	PipelineTO    string
	SpoolMax      int64
	Log           cli.Log
	CH            chclient.Config
	Network       string // none, offchain or onchain: how probes speak the Livepeer protocol
	Discovery     string // static, chain or webhook: where the orchestrator list comes from
	EthURL        string
	BondingMgr    string
	ServiceReg    string
	WebhookURL    string
	Pay           paymentFlags // sender-side limits and session reuse (payment.go)
	Shard         shardFlags   // several instances per region (shard.go)

	parsed *parsed // set by Validate
}

const keyEnv = "TESTER_KEY"

// RegisterFlags defines every flag with its default, and the deprecated
// aliases.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Region, "region", "", "tester region code (required), e.g. FRA; see regions/")
	fs.StringVar(&c.TesterKey, "tester-key", "", "file holding the tester's hex secp256k1 private key (or $"+keyEnv+" with the hex key); its address is the tester id. Absent: an ephemeral key, with a warning")
	fs.StringVar(&c.TesterKeys, "tester-keys", "", "-network onchain: directory of sender key files (one hex secp256k1 key per file, names starting with . ignored), each with its own TicketBroker deposit; every probe is paid by one of them drawn at random among those that can pay. The tester id stays -tester-key's address (required with this flag), which then pays nothing unless its file is also in the directory. Empty: -tester-key pays every probe")
	fs.StringVar(&c.Discovery, "discovery", "static", "where orchestrators come from: static (-orchestrators), chain (the BondingManager pool and each one's ServiceRegistry URI at -eth.url) or webhook (-webhook-url answering [{\"address\":\"<serviceURI>\"}]); chain and webhook learn each orchestrator's address and models from GetOrchestrator, at start and again every round (a failed discovery keeps the last round's orchestrators)")
	fs.StringVar(&c.Orchestrators, "orchestrators", "", "-discovery static: orchestrators to probe (required): a file with one 'address=serviceURI [pipeline:model ...]' per line, or the same entries inline separated by commas")
	fs.StringVar(&c.Models, "models", "", "default pipeline:model list for orchestrators without their own, comma separated, e.g. text-to-image:stabilityai/sdxl-turbo; empty means every model each such orchestrator advertises in GetOrchestrator (asked again every round; not with -network none)")
	fs.StringVar(&c.EthURL, "eth.url", "", "-discovery chain: Ethereum JSON-RPC URL (Arbitrum One for the Livepeer network)")
	fs.StringVar(&c.BondingMgr, "eth.bonding-manager", "", "-discovery chain: BondingManager address (the orchestrator pool)")
	fs.StringVar(&c.ServiceReg, "eth.service-registry", "", "-discovery chain: ServiceRegistry address, or the AI service registry's for AI orchestrators")
	fs.StringVar(&c.WebhookURL, "webhook-url", "", "-discovery webhook: URL answering go-livepeer's orchestrator webhook format")
	fs.StringVar(&c.Schedule, "schedule", "", "cron spec of rounds, e.g. '*/5 * * * *' or '@every 5m'")
	fs.DurationVar(&c.Interval, "interval", 0, "run a round every interval (instead of -schedule)")
	fs.BoolVar(&c.Once, "once", false, "run one round now, print progress and a results table, then exit")
	fs.BoolVar(&c.NoStore, "no-store", false, "do not write to ClickHouse (with -once: a dry run that only prints)")
	fs.BoolVar(&c.SimulateRTT, "simulate-rtt", false, "add the region's simulated network distance to every connection (local demos)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:9105", "address of /metrics and /healthz (empty: off)")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "probes in flight at once across orchestrators (each orchestrator gets at most one)")
	fs.DurationVar(&c.RoundDeadline, "round-deadline", 0, "bound on one round from its start (tick + region offset; default: the period less a twentieth, at most 5 s; none with -once); probes it cuts or keeps from starting are excused tester/round_deadline")
	d := probe.DefaultTimeouts()
	fs.DurationVar(&c.Timeouts.Connect, "timeout.connect", d.Connect, "TCP connect timeout per probe")
	fs.DurationVar(&c.Timeouts.TLS, "timeout.tls", d.TLS, "TLS handshake timeout per probe")
	fs.DurationVar(&c.Timeouts.Server, "timeout.server", d.Server, "request written → first response byte timeout (queue + inference)")
	fs.DurationVar(&c.Timeouts.Total, "timeout.total", d.Total, "whole-probe timeout, discovery to validated output")
	fs.Int64Var(&c.MaxResponse, "max-response-bytes", 16<<20, "cap on an AI response body")
	fs.DurationVar(&c.StallAfter, "timeout.stall", probe.DefaultStallAfter, "a job whose progress stream (orchestrators that offer one) shows no progress this long fails as orchestrator_error/stalled")
	ld := probe.DefaultLiveConfig()
	fs.DurationVar(&c.Live.Duration, "live.duration", ld.Duration, fmt.Sprintf("live-video-to-video probes: stream length published (%s to %s)", probe.LiveMinDuration, probe.LiveMaxDuration))
	fs.IntVar(&c.Live.FPS, "live.fps", ld.FPS, fmt.Sprintf("live-video-to-video probes: frame rate of the synthetic stream (1 to %d)", probe.LiveMaxFPS))
	fs.StringVar(&c.LiveSize, "live.size", fmt.Sprintf("%dx%d", ld.Width, ld.Height), fmt.Sprintf("live-video-to-video probes: frame size WxH, multiples of 16 up to %dx%d (live is billed as 1280x720x30 whatever is sent)", probe.LiveMaxWidth, probe.LiveMaxHeight))
	fs.DurationVar(&c.Live.Segment, "live.segment", ld.Segment, "live-video-to-video probes: stream time of one trickle segment")
	fs.DurationVar(&c.Live.StallAfter, "live.stall", 0, "live-video-to-video probes: an output gap this long while input flows is a stall (orchestrator_error/live_stalled); 0 means 3 segments")
	fs.BoolVar(&c.VerifyTLS, "verify-tls", false, "verify orchestrator TLS certificates (go-livepeer orchestrators use self-signed ones)")
	fs.IntVar(&c.BatchSize, "batch-size", 500, "rows per ClickHouse insert")
	fs.DurationVar(&c.FlushInterval, "flush-interval", 2*time.Second, "longest a result waits before it is inserted")
	fs.DurationVar(&c.ShutdownWait, "shutdown-wait", 30*time.Second, "on stop, how long to keep trying to store queued results")
	fs.StringVar(&c.SpoolDir, "spool-dir", "", "directory of the on-disk spool that keeps results while ClickHouse is down and across crashes (default: $TMPDIR/lpgauge-tester-<region>; give one per tester process)")
	fs.Int64Var(&c.SpoolMax, "spool-max-bytes", 1<<30, "spool size limit; past it new results are refused and logged")
	fs.StringVar(&c.PostStatsURL, "post-stats-url", "", "also post each result to this leaderboard-serverless /api/post_stats URL, signed with the secret of -post-stats-secret-file or $POST_STATS_SECRET")
	fs.StringVar(&c.PostStatsFile, "post-stats-secret-file", "", "file holding the post_stats HMAC secret (else $POST_STATS_SECRET; a flag value would show in ps)")
	fs.StringVar(&c.Control, "control", "", "known-good control target probed before each round, 'address=serviceURI pipeline:model'; when it fails, network-class failures are excused")
	fs.StringVar(&c.PipelineTO, "pipeline-timeout", "", "per-pipeline whole-probe timeouts, e.g. 'llm=30s,image-to-video=5m' (server timeout follows)")
	c.Log.RegisterFlags(fs, "text")
	cli.Alias(fs, "log-level", "log.level")
	fs.StringVar(&c.Network, "network", "offchain", "Livepeer protocol of every probe: offchain (GetOrchestrator, timed as the discovery phase, then unsigned segment credentials), onchain (also signed with -tester-key and paid with tickets; the key needs a TicketBroker deposit) or none (plain AI requests to runner-style targets)")
	c.Pay.register(fs)
	c.Shard.register(fs)
	c.CH.RegisterFlags(fs, "clickhouse.")
	c.CH.RegisterStoreFlag(fs)
}

// parsed is the validated config.
type parsed struct {
	region  regions.Region
	key     *ecdsa.PrivateKey
	keyNote string // warning to log when the key is ephemeral
	// senders are the keys that pay: -tester-keys' files, else key.
	senders  []*ecdsa.PrivateKey
	testerID string
	plan     []tester.Planned // static discovery; chain and webhook plan at start
	// targets is the static list; askModels says some of it has no models
	// (and -models is empty): those are asked with GetOrchestrator each
	// round, as chain and webhook discovery do.
	targets   []tester.Target
	askModels bool
	models    []tester.Model
	ethAddrs  [2]common.Address // BondingManager, ServiceRegistry
	control   *tester.Planned
	timeouts  map[string]probe.Timeouts
	secret    string
	sched     cron.Schedule
	period    time.Duration
	// pool is the last chain pool walk: the next round's walk starts from
	// it and keeps its entries for orchestrators the chain fails to answer for.
	pool *discovery.PoolCache
}

// Validate checks everything and says what to do about each problem, every
// problem at once; the parsed form is kept for Run.
func (c *Config) Validate() error {
	p, err := c.parse()
	c.parsed = p
	return err
}

func (c *Config) parse() (*parsed, error) {
	var errs []error
	p := &parsed{pool: &discovery.PoolCache{}}
	var err error
	if c.Region == "" {
		errs = append(errs, fmt.Errorf("-region is required: one of %s", strings.Join(regions.Codes(regions.AI), ", ")))
	} else if p.region, err = regions.ForTester(c.Region); err != nil {
		errs = append(errs, fmt.Errorf("-region: %w", err))
	}
	if p.key, p.keyNote, err = loadKey(c.TesterKey); err != nil {
		errs = append(errs, fmt.Errorf("-tester-key: %w", err))
	} else {
		p.testerID = strings.ToLower(crypto.PubkeyToAddress(p.key.PublicKey).Hex())
		p.senders = []*ecdsa.PrivateKey{p.key}
	}
	if c.TesterKeys != "" {
		switch {
		case c.Network != "onchain":
			errs = append(errs, fmt.Errorf("-tester-keys pays with several sender keys, which only -network onchain does (got -network %s): remove -tester-keys or use -network onchain", c.Network))
		case p.keyNote != "":
			// A throwaway identity would give the tester a new tester_id at
			// every start; the pool's keys are senders, not the identity.
			errs = append(errs, fmt.Errorf("-tester-keys needs -tester-key (or $%s): the tester's stable identity (tester_id), which does not change with the key that pays", keyEnv))
		}
		if p.senders, err = loadKeyDir(c.TesterKeys); err != nil {
			errs = append(errs, fmt.Errorf("-tester-keys: %w", err))
		}
	}
	if w, h, ok := parseSize(c.LiveSize); !ok && c.LiveSize != "" {
		errs = append(errs, fmt.Errorf("-live.size %q: want WxH, e.g. 128x64", c.LiveSize))
	} else {
		if ok {
			c.Live.Width, c.Live.Height = w, h
		}
		if err := c.Live.Check(); err != nil {
			errs = append(errs, fmt.Errorf("-live.*: %w", err))
		}
	}
	switch c.Network {
	case "none", "offchain", "onchain":
	default:
		errs = append(errs, fmt.Errorf("-network %q: want offchain, onchain or none", c.Network))
	}
	models, merr := tester.ParseModels(c.Models)
	if merr != nil {
		errs = append(errs, fmt.Errorf("-models: %w", merr))
	}
	p.models = models
	switch c.Discovery {
	case "static":
		var targets []tester.Target
		if c.Orchestrators == "" {
			errs = append(errs, errors.New("-orchestrators is required: a file or an inline list of address=serviceURI (or use -discovery chain or webhook)"))
		} else if targets, err = tester.ParseTargets(c.Orchestrators); err != nil {
			errs = append(errs, fmt.Errorf("-orchestrators: %w", err))
		}
		if targets != nil && merr == nil {
			p.targets = targets
			// An entry without models (its own or -models) is asked what it
			// serves, unless there is no protocol to ask with.
			if p.plan, err = tester.Plan(targets, models); err != nil {
				if c.Network == "none" {
					errs = append(errs, fmt.Errorf("-models: %w; with -network none the tester cannot ask it what it serves (GetOrchestrator)", err))
				} else {
					p.askModels = true
				}
			}
		}
	case "chain":
		if c.EthURL == "" {
			errs = append(errs, errors.New("-discovery chain needs -eth.url, an Ethereum JSON-RPC URL"))
		} else if u, err := url.Parse(c.EthURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss") {
			errs = append(errs, fmt.Errorf("-eth.url %q: want an http(s):// or ws(s):// JSON-RPC URL", c.EthURL))
		}
		for i, a := range []struct{ flag, v string }{{"eth.bonding-manager", c.BondingMgr}, {"eth.service-registry", c.ServiceReg}} {
			switch {
			case a.v == "":
				errs = append(errs, fmt.Errorf("-discovery chain needs -%s, a contract address", a.flag))
			case !common.IsHexAddress(a.v) || common.HexToAddress(a.v) == (common.Address{}):
				errs = append(errs, fmt.Errorf("-%s %q: want a non-zero 0x address (40 hex digits)", a.flag, a.v))
			default:
				p.ethAddrs[i] = common.HexToAddress(a.v)
			}
		}
	case "webhook":
		if u, err := url.Parse(c.WebhookURL); c.WebhookURL == "" || err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			errs = append(errs, fmt.Errorf("-discovery webhook needs -webhook-url, an http(s) URL (got %q)", c.WebhookURL))
		}
	default:
		errs = append(errs, fmt.Errorf("-discovery %q: want static, chain or webhook", c.Discovery))
	}
	if c.Discovery != "static" && c.Orchestrators != "" {
		errs = append(errs, fmt.Errorf("-orchestrators is the static list; it cannot be combined with -discovery %s", c.Discovery))
	}
	if !c.Once {
		if p.sched, p.period, err = tester.ParseSchedule(c.Schedule, c.Interval); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Concurrency <= 0 {
		errs = append(errs, fmt.Errorf("-concurrency %d: want at least 1", c.Concurrency))
	}
	if c.Timeouts.Total < c.Timeouts.Server {
		errs = append(errs, fmt.Errorf("-timeout.total %s is shorter than -timeout.server %s", c.Timeouts.Total, c.Timeouts.Server))
	}
	if c.MaxResponse < 1024 {
		errs = append(errs, fmt.Errorf("-max-response-bytes %d: want at least 1024", c.MaxResponse))
	}
	if !c.NoStore {
		if err := c.CH.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("clickhouse: %w", err))
		}
	}
	if c.Control != "" {
		ts, err := tester.ParseTargets(c.Control)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("-control: %w", err))
		case len(ts) != 1 || len(ts[0].Models) != 1:
			errs = append(errs, errors.New("-control: want exactly one 'address=serviceURI pipeline:model'"))
		default:
			p.control = &tester.Planned{Target: ts[0], Model: ts[0].Models[0]}
		}
	}
	if p.timeouts, err = parsePipelineTimeouts(c.PipelineTO); err != nil {
		errs = append(errs, fmt.Errorf("-pipeline-timeout: %w", err))
	}
	if c.PostStatsURL != "" {
		switch p.secret, err = cli.Secret(c.PostStatsFile, "POST_STATS_SECRET"); {
		case err != nil:
			errs = append(errs, fmt.Errorf("-post-stats-secret-file: %w", err))
		case p.secret == "":
			errs = append(errs, errors.New("-post-stats-url needs the endpoint's HMAC secret: put it in a file named by -post-stats-secret-file or in $POST_STATS_SECRET"))
		}
	}
	if c.SpoolMax < 1<<20 {
		errs = append(errs, fmt.Errorf("-spool-max-bytes %d: want at least 1 MiB", c.SpoolMax))
	}
	if c.SpoolDir == "" && p.region.Code != "" {
		c.SpoolDir = filepath.Join(os.TempDir(), "lpgauge-tester-"+p.region.Code)
	}
	errs = append(errs, c.Pay.validate(c.EthURL)...)
	errs = append(errs, c.Shard.validate(c.Once, p.period)...)
	c.CH.Password = os.Getenv("CLICKHOUSE_PASSWORD")
	return p, errors.Join(errs...)
}

// loadKey reads the tester key from a file, else $TESTER_KEY, else makes an
// ephemeral one (results are then attributed to a throwaway identity).
func loadKey(path string) (*ecdsa.PrivateKey, string, error) {
	hexKey := os.Getenv(keyEnv)
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("read key file: %w", err)
		}
		hexKey = string(b)
	}
	hexKey = strings.TrimPrefix(strings.TrimSpace(hexKey), "0x")
	if hexKey == "" {
		k, err := crypto.GenerateKey()
		if err != nil {
			return nil, "", fmt.Errorf("generate ephemeral key: %w", err)
		}
		return k, "no -tester-key or $" + keyEnv + ": using an ephemeral key, so this tester's results carry a throwaway tester id", nil
	}
	k, err := crypto.HexToECDSA(hexKey)
	if err != nil {
		return nil, "", fmt.Errorf("not a hex secp256k1 private key (64 hex digits): %w", err)
	}
	return k, "", nil
}

// loadKeyDir reads every key file of dir (names starting with "." are
// skipped), in name order: each one hex secp256k1 private key, as
// -tester-key's file. Two files of one key are refused: the pool would hold
// one sender twice and draw it twice as often.
func loadKeyDir(dir string) ([]*ecdsa.PrivateKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read key directory: %w", err)
	}
	var keys []*ecdsa.PrivateKey
	seen := map[common.Address]string{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read key file: %w", err)
		}
		k, err := crypto.HexToECDSA(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"))
		if err != nil {
			return nil, fmt.Errorf("%s: not a hex secp256k1 private key (64 hex digits): %w", path, err)
		}
		addr := crypto.PubkeyToAddress(k.PublicKey)
		if other, ok := seen[addr]; ok {
			return nil, fmt.Errorf("%s and %s hold the same key (%s): keep one", other, path, addr.Hex())
		}
		seen[addr] = path
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key file: put one hex private key per file there, each funded on the TicketBroker", dir)
	}
	return keys, nil
}

// parsePipelineTimeouts reads "slug=duration,..." into per-pipeline timeouts.
func parsePipelineTimeouts(s string) (map[string]probe.Timeouts, error) {
	out := map[string]probe.Timeouts{}
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		slug, d, ok := strings.Cut(item, "=")
		dur, err := time.ParseDuration(d)
		if !ok || err != nil || dur <= 0 {
			return nil, fmt.Errorf("%q: want pipeline=duration, e.g. llm=30s", item)
		}
		pl, ok := probe.Lookup(slug)
		if !ok {
			return nil, fmt.Errorf("unknown pipeline %q: use one of %s", slug, strings.Join(probe.Slugs(), ", "))
		}
		out[pl.Info().Slug] = probe.Timeouts{Server: dur, Total: dur}
	}
	return out, nil
}

// parseSize reads "WxH".
func parseSize(s string) (w, h int, ok bool) {
	a, b, found := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	return w, h, err1 == nil && err2 == nil && w > 0 && h > 0
}
