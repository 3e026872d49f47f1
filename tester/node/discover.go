package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/discovery"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/identity"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// discoveryTimeout bounds finding the orchestrators, at start and at the
// start of each round: the source, then one GetOrchestrator per
// orchestrator.
const (
	discoveryTimeout = time.Minute
	infoTimeout      = 6 * time.Second // go-livepeer's discovery cutoff
)

// discoverPlan lists the orchestrators of -discovery chain or webhook (or
// the static entries without models when -models is empty) and plans one
// probe per (orchestrator, model). Each orchestrator's address
// (webhook) and models (when -models is empty) come from its own
// GetOrchestrator answer, as a go-livepeer gateway learns them.
//
// prev is the plan of the last round, nil at start: an orchestrator still
// listed by the source whose GetOrchestrator fails now keeps its earlier
// targets, so its probes run and record the failure instead of it silently
// dropping out of the measurements.
func discoverPlan(ctx context.Context, c *Config, p *parsed, gw func(context.Context) *gateway.Gateway, prev []tester.Planned, log *slog.Logger) ([]tester.Planned, error) {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	var src discovery.Source
	var fixed []tester.Target // static entries with their own models
	switch c.Discovery {
	case "static":
		var ask staticSource
		for _, t := range p.targets {
			if len(t.Models) > 0 {
				fixed = append(fixed, t)
				continue
			}
			ask = append(ask, discovery.Orchestrator{Address: common.HexToAddress(t.Address), ServiceURI: t.ServiceURI, Active: true})
		}
		src = ask
	case "chain":
		client, err := ethclient.DialContext(ctx, c.EthURL)
		if err != nil {
			return nil, fmt.Errorf("-eth.url %s: %w", c.EthURL, err)
		}
		defer client.Close()
		chainID, err := client.ChainID(ctx)
		if err != nil {
			return nil, fmt.Errorf("-eth.url %s: chain id: %w (is it an Ethereum JSON-RPC endpoint?)", c.EthURL, err)
		}
		l, err := contracts.New(client, chainID, contracts.Addresses{BondingManager: p.ethAddrs[0], ServiceRegistry: p.ethAddrs[1]})
		if err != nil {
			return nil, err
		}
		src = discovery.Chain{L: l, Cache: p.pool, Logger: log}
	case "webhook":
		src = discovery.Webhook{URL: c.WebhookURL}
	default:
		return nil, fmt.Errorf("-discovery %q: nothing to discover", c.Discovery)
	}
	found, err := src.Orchestrators(ctx)
	if err != nil {
		return nil, fmt.Errorf("-discovery %s: %w", c.Discovery, err)
	}

	known := map[string]tester.Target{} // service URI → last round's target
	for _, pl := range prev {
		t := known[pl.Target.ServiceURI]
		t.Address, t.ServiceURI = pl.Target.Address, pl.Target.ServiceURI
		t.Models = append(t.Models, pl.Model)
		known[pl.Target.ServiceURI] = t
	}
	targets := make([]*tester.Target, len(found))
	sem := make(chan struct{}, max(c.Concurrency, 1))
	var wg sync.WaitGroup
	for i, o := range found {
		if !o.Active {
			log.Info("discovery: orchestrator not active this round; skipped", "address", o.Address.Hex(), "service_uri", o.ServiceURI)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var before *tester.Target
			if t, ok := known[strings.TrimRight(o.ServiceURI, "/")]; ok {
				before = &t
			}
			targets[i] = resolve(ctx, gw(ctx), o, p.models, before, log)
		}()
	}
	wg.Wait()
	ts := fixed
	seen := map[string]bool{}
	for _, t := range targets {
		if t == nil || seen[t.Address+t.ServiceURI] {
			continue
		}
		seen[t.Address+t.ServiceURI] = true
		ts = append(ts, *t)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("-discovery %s found %d orchestrators and none can be probed (see the log)", c.Discovery, len(found))
	}
	log.Info("discovery", "source", c.Discovery, "found", len(found), "targets", len(ts))
	return tester.Plan(ts, p.models)
}

// staticSource is the part of a static list whose models are asked for.
type staticSource []discovery.Orchestrator

// Orchestrators implements discovery.Source.
func (s staticSource) Orchestrators(context.Context) ([]discovery.Orchestrator, error) { return s, nil }

// resolve turns a discovered orchestrator into a target, or nil with the
// reason logged when it has no address or nothing to probe. before is what
// the last round probed at the same service URI (nil if nothing): it stands
// in when GetOrchestrator fails now.
func resolve(ctx context.Context, gw *gateway.Gateway, o discovery.Orchestrator, defaults []tester.Model, before *tester.Target, log *slog.Logger) *tester.Target {
	log = log.With("service_uri", o.ServiceURI)
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, _, err := gw.Info(ictx, o.ServiceURI)
	if errors.Is(err, gateway.ErrNotWorking) {
		log.Warn("discovery: orchestrator advertises no transcoder URI (not taking work); skipped")
		return nil
	}
	addr := o.Address
	if err == nil && addr == (common.Address{}) && len(info.GetAddress()) == common.AddressLength {
		// Self-reported: stored under only once proven (tester/identity).
		if claimed := common.BytesToAddress(info.GetAddress()); claimed != (common.Address{}) {
			if addr = identity.Check(ictx, o.ServiceURI, claimed, log); addr == (common.Address{}) {
				return nil
			}
		}
	}
	if err != nil && before != nil && (addr == (common.Address{}) || strings.EqualFold(addr.Hex(), before.Address)) {
		// Probed last round and still listed: probe the same again, so
		// the failure is measured (each probe asks GetOrchestrator anew).
		log.Warn("discovery: GetOrchestrator failed; probing what was probed last round", "address", before.Address, "err", err)
		t := *before
		if len(defaults) > 0 {
			t.Models = nil
		}
		return &t
	}
	switch {
	case addr == (common.Address{}) && err != nil:
		log.Warn("discovery: GetOrchestrator failed and the source gives no address; skipped", "err", err)
		return nil
	case addr == (common.Address{}):
		log.Warn("discovery: orchestrator reports no address; skipped")
		return nil
	}
	t := &tester.Target{Address: strings.ToLower(addr.Hex()), ServiceURI: o.ServiceURI}
	if len(defaults) > 0 {
		// Probed even when GetOrchestrator failed now: each probe asks
		// again and records the failure against the orchestrator.
		return t
	}
	if err != nil {
		log.Warn("discovery: GetOrchestrator failed, so its models are unknown (give -models to probe it anyway); skipped", "address", t.Address, "err", err)
		return nil
	}
	for _, off := range gateway.Offers(info) {
		cp, ok := capability.ByID(off.Capability)
		if !ok {
			continue
		}
		pl, ok := probe.Lookup(cp.Slug)
		if !ok {
			continue // a pipeline the tester has no probe for (live video)
		}
		t.Models = append(t.Models, tester.Model{Pipeline: pl, Model: off.Model})
	}
	if len(t.Models) == 0 {
		log.Warn("discovery: orchestrator advertises no model the tester can probe; skipped", "address", t.Address)
		return nil
	}
	return t
}
