package explorerapi

import (
	"context"
	"fmt"
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
}

// percDivisor is Livepeer's PERC_DIVISOR (100 % = 1 000 000).
const percDivisor = 1_000_000

// OnChain reads facts through gateway/discovery's pool walk (the code the
// tester uses to find orchestrators) and the BondingManager views discovery
// does not read (reward cut, fee share, registration of addresses without a
// service URI). The pool is cached for PoolTTL, so a page view costs two
// calls, not a pool walk.
type OnChain struct {
	L       *contracts.Livepeer
	PoolTTL time.Duration // 0: one minute

	mu      sync.Mutex
	pool    []discovery.Orchestrator
	fetched time.Time
}

// Pool implements Chain.
func (c *OnChain) Pool(ctx context.Context) ([]discovery.Orchestrator, error) {
	ttl := c.PoolTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pool != nil && time.Since(c.fetched) < ttl {
		return c.pool, nil
	}
	pool, err := discovery.Chain{L: c.L}.Orchestrators(ctx)
	if err != nil {
		return nil, err
	}
	if pool == nil {
		pool = []discovery.Orchestrator{}
	}
	c.pool, c.fetched = pool, time.Now()
	return pool, nil
}

// Facts implements Chain.
func (c *OnChain) Facts(ctx context.Context, addr common.Address) (ChainFacts, error) {
	var f ChainFacts
	pool, err := c.Pool(ctx)
	if err != nil {
		return f, err
	}
	for _, o := range pool {
		if o.Address == addr {
			f.InPool, f.Registered, f.Active, f.ServiceURI, f.TotalStakeWei = true, true, o.Active, o.ServiceURI, o.Stake
		}
	}
	bm := c.L.BondingManager
	if !f.InPool {
		// Registered without a service URI, or not registered: discovery
		// skips these, the profile still says which.
		st, err := bm.Call(ctx, "transcoderStatus", addr)
		if err != nil {
			return f, fmt.Errorf("transcoder status: %w", err)
		}
		f.Registered = fmt.Sprint(st[0]) != "0"
		if !f.Registered {
			return f, nil
		}
		if f.ServiceURI, err = c.L.ServiceURI(ctx, addr); err != nil {
			return f, fmt.Errorf("service URI: %w", err)
		}
		stake, err := bm.Call(ctx, "transcoderTotalStake", addr)
		if err != nil {
			return f, fmt.Errorf("total stake: %w", err)
		}
		f.TotalStakeWei = fmt.Sprint(stake[0])
		active, err := bm.Call(ctx, "isActiveTranscoder", addr)
		if err != nil {
			return f, fmt.Errorf("active: %w", err)
		}
		f.Active, _ = active[0].(bool)
	}
	tr, err := bm.Call(ctx, "getTranscoder", addr)
	if err != nil {
		return f, fmt.Errorf("transcoder: %w", err)
	}
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

func percent(v any) float64 {
	b, ok := v.(*big.Int)
	if !ok || b == nil {
		return 0
	}
	f, _ := new(big.Float).Quo(new(big.Float).SetInt(b), big.NewFloat(percDivisor/100)).Float64()
	return f
}
