// Package node is the explorer-api program (binary explorer-api): the
// Explorer's AI leaderboard data (overview, leaderboard rows, orchestrator
// profiles with on-chain facts and history) and the built-in web
// leaderboard, from the probe results in ClickHouse, behind the house HTTP
// server with /metrics. cmd/explorer-api only wires signals and the exit
// status.
package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/contracts"
	explorerapi "github.com/lpgauge/lpgauge/explorer-api"
	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/internal/httpserve"
	lbnode "github.com/lpgauge/lpgauge/leaderboard/node"
)

// Config is explorer-api's command line; the ClickHouse password comes from
// the environment (LoadSecrets), never from a flag.
type Config struct {
	Log             cli.Log
	serve           cli.ReadServer
	ch              chclient.Config
	ethURL          string
	bondingManager  string
	serviceRegistry string
	poolTTL         time.Duration

	// backend replaces -eth.url (tests pass the simulated chain's client).
	backend contracts.Backend
}

// RegisterFlags defines every flag with its default.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Log.RegisterFlags(fs, "json")
	c.serve.RegisterFlags(fs, cli.ReadServerDefaults{
		Listen:            ":8081",
		WindowUsage:       "score look-back when a request gives no since",
		QueryTimeoutUsage: "store and chain time allowed to one request",
		Migrate:           false,
		MigrateUsage:      "apply the schema migrations at start (the leaderboard normally does)",
	})
	c.ch.RegisterFlags(fs, "clickhouse.")
	c.ch.RegisterStoreFlag(fs)
	fs.StringVar(&c.ethURL, "eth.url", "", "Ethereum JSON-RPC URL (Arbitrum One) for on-chain facts; empty: profiles carry on_chain null")
	fs.StringVar(&c.bondingManager, "eth.bonding-manager", "", "BondingManager address (required with -eth.url)")
	fs.StringVar(&c.serviceRegistry, "eth.service-registry", "", "ServiceRegistry address (required with -eth.url)")
	fs.DurationVar(&c.poolTTL, "eth.pool-ttl", time.Minute, "how long the on-chain orchestrator pool walk is cached")
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
	if c.poolTTL <= 0 {
		errs = append(errs, fmt.Errorf("-eth.pool-ttl %s: must be positive", c.poolTTL))
	}
	if c.ethURL != "" || c.backend != nil {
		for name, v := range map[string]string{"-eth.bonding-manager": c.bondingManager, "-eth.service-registry": c.serviceRegistry} {
			if !common.IsHexAddress(v) {
				errs = append(errs, fmt.Errorf("%s=%q: want a 0x address when a chain is configured", name, v))
			}
		}
	}
	return errors.Join(errs...)
}

// Main parses args, reads the ClickHouse password from the environment and
// runs explorer-api until ctx ends, logging to stderr.
func Main(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	var cfg Config
	fs := flag.NewFlagSet("explorer-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg.ch.Password = os.Getenv("CLICKHOUSE_PASSWORD")
	log := cfg.Log.New(stderr)
	cli.WarnDeprecated(fs, log)
	return Run(ctx, cfg, log, ready)
}

// chain binds the BondingManager and ServiceRegistry; nil when none is
// configured.
func chain(ctx context.Context, cfg Config) (explorerapi.Chain, func(), error) {
	b := cfg.backend
	closeFn := func() {}
	if b == nil {
		if cfg.ethURL == "" {
			return nil, closeFn, nil
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := ethclient.DialContext(dctx, cfg.ethURL)
		if err != nil {
			return nil, closeFn, fmt.Errorf("dial %s: %w", cfg.ethURL, err)
		}
		b, closeFn = c, c.Close
	}
	// Reads need no chain id; the other two contracts are never called.
	l, err := contracts.New(b, nil, contracts.Addresses{
		BondingManager:  common.HexToAddress(cfg.bondingManager),
		ServiceRegistry: common.HexToAddress(cfg.serviceRegistry),
	})
	if err != nil {
		closeFn()
		return nil, func() {}, err
	}
	return &explorerapi.OnChain{L: l, PoolTTL: cfg.poolTTL}, closeFn, nil
}

// Run serves until ctx ends, then drains in-flight requests. ready, when not
// nil, receives the bound address once the server listens (tests use :0).
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready chan<- string) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	st, closeStore, err := lbnode.OpenStore(ctx, cfg.ch, cfg.serve.Migrate, cfg.serve.QueryTimeout, log)
	if err != nil {
		return err
	}
	defer closeStore()
	ch, closeChain, err := chain(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeChain()
	if oc, ok := ch.(*explorerapi.OnChain); ok {
		// Chain facts are read in the background, never on a request's path.
		oc.Logger = log
		oc.Start(ctx)
	}
	handler := explorerapi.New(explorerapi.Config{Window: cfg.serve.Window, QueryTimeout: cfg.serve.QueryTimeout, Chain: ch, Logger: log}, st)
	// explorer-api's own /healthz stays; /metrics is added in front.
	handler = httpserve.Observe("explorer_api", handler, prometheus.NewRegistry(), nil)
	srv := httpserve.NewServer(handler, 2*cfg.serve.QueryTimeout+10*time.Second)
	return httpserve.Run(ctx, srv, cfg.serve.Listen, cfg.serve.ShutdownTimeout, log.With("chain", ch != nil), ready)
}
