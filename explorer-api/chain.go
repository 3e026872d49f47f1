package explorerapi

import (
	"context"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway/discovery"
)

// Chain reads an orchestrator's on-chain facts.
type Chain interface {
	Facts(ctx context.Context, addr common.Address) (ChainFacts, error)
	// Pool is the orchestrators discovery finds on chain (cached).
	Pool(ctx context.Context) ([]discovery.Orchestrator, error)
}

// ChainFacts is what the BondingManager and ServiceRegistry say about one
// address. Reward cut and fee share are percentages (Livepeer stores them in
// parts per million of 100 %: 1 000 000 = 100 %).
type ChainFacts struct {
	Registered       bool    `json:"registered"`
	Active           bool    `json:"active"`
	InPool           bool    `json:"in_pool"`
	ServiceURI       string  `json:"service_uri"`
	TotalStakeWei    string  `json:"total_stake_wei"`
	TotalStakeLPT    float64 `json:"total_stake_lpt"`
	RewardCutPercent float64 `json:"reward_cut_percent"`
	FeeSharePercent  float64 `json:"fee_share_percent"`
	// Partial marks facts from a pool walk still in progress (no complete
	// walk yet): an address not walked yet reads as not registered.
	Partial bool `json:"partial,omitempty"`
	// Stale marks facts of an earlier walk standing in for what the last
	// walk could not read (its calls kept failing).
	Stale bool `json:"stale,omitempty"`
	// AsOf is when the walk these facts come from started (unix s).
	AsOf int64 `json:"as_of,omitempty"`
}

// percDivisor is Livepeer's PERC_DIVISOR (100 % = 1 000 000).
const percDivisor = 1_000_000

// ChainStatus says how fresh the chain facts a page shows are.
type ChainStatus struct {
	// Partial: no complete pool walk yet; the facts are those walked so far.
	Partial bool
	// AsOf is when the walk shown started; zero before any walk.
	AsOf time.Time
	// Err is the last walk's failure, if it failed.
	Err error
}

// OnChain reads on-chain facts in the background and answers pages from the
// newest walk, never from the chain: at mainnet latency a pool walk of a
// hundred orchestrators × 5 calls cannot fit in a request's deadline. The
// walk is gateway/discovery's (the one the tester's gateway uses: hints from
// the previous walk and the ServiceURIUpdate logs, bounded parallel calls,
// per-call timeout and retries, stale last-known entries), asked for the
// reward cut and fee share too and to hand over each member as it is read.
// Until the first walk completes, pages get the members walked so far,
// marked partial; after that, the last complete walk while the next one
// runs.
type OnChain struct {
	L *contracts.Livepeer
	// PoolTTL is the time between walks (one minute).
	PoolTTL time.Duration
	// Parallel bounds concurrent chain calls (16: an explorer shares its RPC
	// endpoint's rate limit with nobody in a hurry, unlike a tester round).
	Parallel int
	Logger   *slog.Logger

	cache   discovery.PoolCache // the previous walk: hints and stale stand-ins
	mu      sync.RWMutex
	started bool
	done    *chainSnapshot // newest complete walk
	walking *chainSnapshot // the walk in progress
	lastErr error
}

type chainSnapshot struct {
	at    time.Time
	facts map[common.Address]ChainFacts
	order []common.Address // pool order (arrival order while walking)
}

// Start walks the pool now and every PoolTTL until ctx ends.
func (c *OnChain) Start(ctx context.Context) {
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	go c.loop(ctx)
}

func (c *OnChain) loop(ctx context.Context) {
	ttl := c.PoolTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	for {
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			c.logger().Warn("chain pool walk failed or incomplete; pages keep the last facts", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(ttl):
		}
	}
}

func (c *OnChain) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// ensureStarted starts the background walk on first use when nobody called
// Start or Refresh, so a page never waits for the chain.
func (c *OnChain) ensureStarted() {
	c.mu.Lock()
	start := !c.started
	c.started = true
	c.mu.Unlock()
	if start {
		go c.loop(context.Background())
	}
}

// Refresh walks the pool once and publishes the result; members are
// published as their facts arrive, so a walk that fails half-way still
// leaves what it read (marked partial while no complete walk exists). A walk
// that read only part of the pool is published with the previous walk's
// facts standing in (marked stale) and its reason returned.
func (c *OnChain) Refresh(ctx context.Context) error {
	snap := &chainSnapshot{at: time.Now(), facts: map[common.Address]ChainFacts{}}
	c.mu.Lock()
	c.started = true
	c.walking = snap
	c.mu.Unlock()
	parallel := c.Parallel
	if parallel <= 0 {
		parallel = 16
	}
	walk := discovery.Chain{L: c.L, Cache: &c.cache, Parallel: parallel, Logger: c.logger(), Cuts: true,
		OnMember: func(o discovery.Orchestrator) {
			f := factsOf(o, snap.at)
			c.mu.Lock()
			defer c.mu.Unlock()
			snap.facts[o.Address] = f
			snap.order = append(snap.order, o.Address)
		}}
	pool, err := walk.Walk(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.lastErr = err
		return err
	}
	full := &chainSnapshot{at: snap.at, facts: map[common.Address]ChainFacts{}}
	for _, o := range pool.Members {
		full.facts[o.Address] = factsOf(o, snap.at)
		full.order = append(full.order, o.Address)
	}
	c.done, c.walking, c.lastErr = full, nil, pool.Incomplete
	return pool.Incomplete
}

// factsOf turns one walked pool member into the facts pages show.
func factsOf(o discovery.Orchestrator, at time.Time) ChainFacts {
	f := ChainFacts{
		Registered:       true,
		ServiceURI:       o.ServiceURI,
		InPool:           o.ServiceURI != "", // discovery's pool: members with a service URI
		TotalStakeWei:    o.Stake,
		Active:           o.Active,
		RewardCutPercent: percent(o.RewardCut),
		FeeSharePercent:  percent(o.FeeShare),
		Stale:            o.Stale,
		AsOf:             at.Unix(),
	}
	if w, ok := new(big.Int).SetString(o.Stake, 10); ok {
		f.TotalStakeLPT, _ = new(big.Float).Quo(new(big.Float).SetInt(w), big.NewFloat(1e18)).Float64()
	}
	return f
}

// view is the snapshot pages read: the newest complete walk, else what the
// walk in progress (or the failed one) has read so far, marked partial; nil
// before anything was read. The caller holds c.mu for reading.
func (c *OnChain) view() (*chainSnapshot, bool) {
	if c.done != nil {
		return c.done, false
	}
	if c.walking != nil && len(c.walking.facts) > 0 {
		return c.walking, true
	}
	return nil, true
}

// Status implements the freshness pages report.
func (c *OnChain) Status() ChainStatus {
	c.ensureStarted()
	c.mu.RLock()
	defer c.mu.RUnlock()
	snap, partial := c.view()
	st := ChainStatus{Partial: partial, Err: c.lastErr}
	if snap != nil {
		st.AsOf = snap.at
	}
	return st
}

// Pool implements Chain: the members of the shown walk that have a service
// URI (discovery's pool), in pool order.
func (c *OnChain) Pool(ctx context.Context) ([]discovery.Orchestrator, error) {
	c.ensureStarted()
	c.mu.RLock()
	defer c.mu.RUnlock()
	snap, _ := c.view()
	if snap == nil {
		if c.lastErr != nil {
			return nil, c.lastErr
		}
		return []discovery.Orchestrator{}, nil
	}
	pool := []discovery.Orchestrator{}
	for _, a := range snap.order {
		if f := snap.facts[a]; f.ServiceURI != "" {
			pool = append(pool, discovery.Orchestrator{Address: a, ServiceURI: f.ServiceURI, Stake: f.TotalStakeWei, Active: f.Active, Stale: f.Stale})
		}
	}
	return pool, nil
}

// Facts implements Chain from the shown walk: an address not in the pool is
// not registered (Livepeer's registered transcoders are the pool).
func (c *OnChain) Facts(ctx context.Context, addr common.Address) (ChainFacts, error) {
	c.ensureStarted()
	c.mu.RLock()
	defer c.mu.RUnlock()
	snap, partial := c.view()
	if snap == nil {
		if c.lastErr != nil {
			return ChainFacts{}, c.lastErr
		}
		return ChainFacts{Partial: true}, nil
	}
	f, ok := snap.facts[addr]
	if !ok {
		f = ChainFacts{AsOf: snap.at.Unix()}
	}
	f.Partial = partial
	return f, nil
}

// percent turns parts per million of 100 % into a percentage.
func percent(ppm int64) float64 {
	return float64(ppm) / (percDivisor / 100)
}
