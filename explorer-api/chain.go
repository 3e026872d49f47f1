package explorerapi

import (
	"context"
	"errors"
	"fmt"
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
// hundred orchestrators × 4 calls cannot fit in a request's deadline. The
// walk follows the BondingManager's pool list (getFirst/NextTranscoderInPool,
// as gateway/discovery does) one hop at a time (each hop needs the previous
// answer) while each member's facts (service URI, stake, active, reward cut
// and fee share) are read in parallel, at most Parallel calls at once. Until
// the first walk completes, pages get the members walked so far, marked
// partial; after that, the last complete walk while the next one runs.
type OnChain struct {
	L *contracts.Livepeer
	// PoolTTL is the time between walks (one minute).
	PoolTTL time.Duration
	// Parallel bounds concurrent chain calls (16).
	Parallel int
	Logger   *slog.Logger

	mu      sync.RWMutex
	started bool
	done    *chainSnapshot // newest complete walk
	walking *chainSnapshot // the walk in progress
	lastErr error
}

type chainSnapshot struct {
	at    time.Time
	facts map[common.Address]ChainFacts
	order []common.Address // pool order
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
			c.logger().Warn("chain pool walk failed; pages keep the last facts", "err", err)
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
// leaves what it read (marked partial while no complete walk exists).
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
	sem := make(chan struct{}, parallel)
	bm := c.L.BondingManager
	bounded := func(f func() error) error {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-sem }()
		return f()
	}
	call := func(method string, args ...any) (out []any, err error) {
		err = bounded(func() error { out, err = bm.Call(ctx, method, args...); return err })
		return out, err
	}
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var factErr error
	err := func() error {
		out, err := call("getFirstTranscoderInPool")
		if err != nil {
			return fmt.Errorf("pool walk: %w", err)
		}
		addr, _ := out[0].(common.Address)
		for n := 0; addr != (common.Address{}) && n < discovery.MaxPool; n++ {
			wg.Add(1)
			go func(addr common.Address) {
				defer wg.Done()
				f, err := c.readFacts(ctx, addr, bounded, call)
				if err != nil {
					errMu.Lock()
					factErr = errors.Join(factErr, err)
					errMu.Unlock()
					return
				}
				f.AsOf = snap.at.Unix()
				c.mu.Lock()
				snap.facts[addr] = f
				snap.order = append(snap.order, addr)
				c.mu.Unlock()
			}(addr)
			next, err := call("getNextTranscoderInPool", addr)
			if err != nil {
				return fmt.Errorf("pool walk after %s: %w", addr.Hex(), err)
			}
			addr, _ = next[0].(common.Address)
		}
		return nil
	}()
	wg.Wait()
	if err == nil {
		err = factErr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
	if err != nil {
		return err
	}
	c.done, c.walking = snap, nil
	return nil
}

// readFacts reads one pool member's facts with four parallel calls.
func (c *OnChain) readFacts(ctx context.Context, addr common.Address, bounded func(func() error) error, call func(string, ...any) ([]any, error)) (ChainFacts, error) {
	f := ChainFacts{Registered: true}
	var uri string
	var stake, active, tr []any
	var errs [4]error
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		errs[0] = bounded(func() error { var err error; uri, err = c.L.ServiceURI(ctx, addr); return err })
	}()
	go func() { defer wg.Done(); stake, errs[1] = call("transcoderTotalStake", addr) }()
	go func() { defer wg.Done(); active, errs[2] = call("isActiveTranscoder", addr) }()
	go func() { defer wg.Done(); tr, errs[3] = call("getTranscoder", addr) }()
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return f, fmt.Errorf("facts of %s: %w", addr.Hex(), err)
	}
	f.ServiceURI = uri
	f.InPool = uri != "" // discovery's pool: members with a service URI
	f.TotalStakeWei = fmt.Sprint(stake[0])
	f.Active, _ = active[0].(bool)
	if len(tr) >= 3 {
		f.RewardCutPercent = percent(tr[1])
		f.FeeSharePercent = percent(tr[2])
	}
	if w, ok := new(big.Int).SetString(f.TotalStakeWei, 10); ok {
		lpt, _ := new(big.Float).Quo(new(big.Float).SetInt(w), big.NewFloat(1e18)).Float64()
		f.TotalStakeLPT = lpt
	}
	return f, nil
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
			pool = append(pool, discovery.Orchestrator{Address: a, ServiceURI: f.ServiceURI, Stake: f.TotalStakeWei, Active: f.Active})
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

func percent(v any) float64 {
	b, ok := v.(*big.Int)
	if !ok || b == nil {
		return 0
	}
	f, _ := new(big.Float).Quo(new(big.Float).SetInt(b), big.NewFloat(percDivisor/100)).Float64()
	return f
}
