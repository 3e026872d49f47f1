package main

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

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/capability"
	"github.com/lpgauge/lpgauge/gateway/discovery"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// discoveryTimeout bounds finding the orchestrators at start: the source,
// then one GetOrchestrator per orchestrator.
const (
	discoveryTimeout = time.Minute
	infoTimeout      = 6 * time.Second // go-livepeer's discovery cutoff
)

// discoverPlan lists the orchestrators of -discovery chain or webhook and
// plans one probe per (orchestrator, model). Each orchestrator's address
// (webhook) and models (when -models is empty) come from its own
// GetOrchestrator answer, as a go-livepeer gateway learns them.
func discoverPlan(ctx context.Context, c *config, p *parsed, gw *gateway.Gateway, log *slog.Logger) ([]tester.Planned, error) {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	var src discovery.Source
	switch c.Discovery {
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
		src = discovery.Chain{L: l}
	case "webhook":
		src = discovery.Webhook{URL: c.WebhookURL}
	default:
		return nil, fmt.Errorf("-discovery %q: nothing to discover", c.Discovery)
	}
	found, err := src.Orchestrators(ctx)
	if err != nil {
		return nil, fmt.Errorf("-discovery %s: %w", c.Discovery, err)
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
			targets[i] = resolve(ctx, gw, o, p.models, log)
		}()
	}
	wg.Wait()
	var ts []tester.Target
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

// resolve turns a discovered orchestrator into a target, or nil with the
// reason logged when it has no address or nothing to probe.
func resolve(ctx context.Context, gw *gateway.Gateway, o discovery.Orchestrator, defaults []tester.Model, log *slog.Logger) *tester.Target {
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
		addr = common.BytesToAddress(info.GetAddress())
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
