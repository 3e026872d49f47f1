package discovery_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/gateway/discovery"
)

// farChain is a chain endpoint far away and unreliable: every call and log
// query answers after delay, and fail decides which calls fail (as an RPC
// provider's 429s and timeouts do).
type farChain struct {
	contracts.Backend
	delay time.Duration
	fail  func(msg ethereum.CallMsg) bool
	calls *atomic.Int64
}

var errInjected = errors.New("injected RPC failure")

func (f farChain) wait(ctx context.Context) error {
	select {
	case <-time.After(f.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f farChain) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	if f.calls != nil {
		f.calls.Add(1)
	}
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	if f.fail != nil && f.fail(msg) {
		return nil, errInjected
	}
	return f.Backend.CallContract(ctx, msg, block)
}

func (f farChain) FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.Backend.FilterLogs(ctx, q)
}

// pool registers n orchestrators, each with its own service URI, sending
// every transaction before waiting (a few seconds for 300).
func pool(t testing.TB, n int) (*chaintest.Chain, map[common.Address]string) {
	t.Helper()
	keys := make([]*ecdsa.PrivateKey, n)
	for i := range keys {
		keys[i], _ = crypto.GenerateKey()
	}
	c := chaintest.New(t, keys...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nonce, err := c.Sim.Client().PendingNonceAt(ctx, crypto.PubkeyToAddress(c.Owner.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	want := map[common.Address]string{}
	var txs []*types.Transaction
	for i, k := range keys {
		addr := crypto.PubkeyToAddress(k.PublicKey)
		opts := c.L.Opts(c.Owner)
		opts.Context = ctx
		opts.Nonce = new(big.Int).SetUint64(nonce + uint64(i))
		tx, err := c.L.BondingManager.Transact(ctx, opts, "register", addr, big.NewInt(1e18), big.NewInt(0), big.NewInt(0), big.NewInt(0), big.NewInt(0))
		if err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
		txs = append(txs, tx)
		uri := fmt.Sprintf("https://o%d.example:8935", i)
		tx, err = c.L.ServiceRegistry.Transact(ctx, c.L.Opts(k), "setServiceURI", uri)
		if err != nil {
			t.Fatalf("service URI %d: %v", i, err)
		}
		txs = append(txs, tx)
		want[addr] = uri
	}
	for _, tx := range txs {
		if err := c.L.Wait(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	return c, want
}

func far(t testing.TB, c *chaintest.Chain, f farChain) *contracts.Livepeer {
	t.Helper()
	f.Backend = c.L.Backend
	l, err := contracts.New(f, c.L.ChainID, c.L.Addresses())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func check(t testing.TB, got []discovery.Orchestrator, want map[common.Address]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("found %d orchestrators, want %d", len(got), len(want))
	}
	for _, o := range got {
		if want[o.Address] != o.ServiceURI || !o.Active || o.Stake != "1000000000000000000" {
			t.Fatalf("found %+v, want URI %q, active, stake 1e18", o, want[o.Address])
		}
	}
}

// 60 orchestrators at 100 ms a call: 240 calls, 24 s in sequence (the walk
// before), more than the 10 s a round can give discovery here; overlapped,
// every one is found in time (about a second).
func TestChainWalkOverlapsCalls(t *testing.T) {
	c, want := pool(t, 60)
	l := far(t, c, farChain{delay: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := discovery.Chain{L: l}.Orchestrators(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, want)
	for _, o := range got {
		if o.Stale {
			t.Fatalf("%s stale in a walk where nothing failed", o.Address.Hex())
		}
	}
}

// 5 % of calls fail (at random): retries still find every orchestrator.
func TestChainWalkRetriesFailedCalls(t *testing.T) {
	c, want := pool(t, 60)
	var mu sync.Mutex
	rnd := rand.New(rand.NewSource(1))
	failed := 0
	l := far(t, c, farChain{delay: 10 * time.Millisecond, fail: func(ethereum.CallMsg) bool {
		mu.Lock()
		defer mu.Unlock()
		if rnd.Float64() < 0.05 {
			failed++
			return true
		}
		return false
	}})
	got, err := discovery.Chain{L: l}.Orchestrators(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, want)
	mu.Lock()
	defer mu.Unlock()
	if failed == 0 {
		t.Fatal("no call failed: the test proves nothing")
	}
	t.Logf("%d calls failed and were retried", failed)
}

// An orchestrator whose fact calls keep failing keeps the previous walk's
// entry, marked stale; a walk whose hop keeps failing keeps the previous
// walk's tail, marked stale.
func TestChainWalkKeepsLastKnown(t *testing.T) {
	c, want := pool(t, 20)
	cache := &discovery.PoolCache{}
	first, err := discovery.Chain{L: c.L, Cache: cache}.Orchestrators(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	check(t, first, want)
	victim := first[7].Address
	nextSel := crypto.Keccak256([]byte("getNextTranscoderInPool(address)"))[:4]
	mentions := func(msg ethereum.CallMsg) bool { return bytes.Contains(msg.Data, victim.Bytes()) }
	isNext := func(msg ethereum.CallMsg) bool { return bytes.HasPrefix(msg.Data, nextSel) }

	t.Run("facts fail", func(t *testing.T) {
		l := far(t, c, farChain{fail: func(m ethereum.CallMsg) bool { return mentions(m) && !isNext(m) }})
		got, err := discovery.Chain{L: l, Cache: cache}.Orchestrators(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, want)
		for _, o := range got {
			if o.Stale != (o.Address == victim) {
				t.Fatalf("%s stale=%v; want only %s stale", o.Address.Hex(), o.Stale, victim.Hex())
			}
		}
	})
	t.Run("walk breaks", func(t *testing.T) {
		l := far(t, c, farChain{fail: func(m ethereum.CallMsg) bool { return mentions(m) && isNext(m) }})
		got, err := discovery.Chain{L: l, Cache: cache}.Orchestrators(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, want)
		for i, o := range got {
			if o.Stale != (i > 7) {
				t.Fatalf("entry %d (%s) stale=%v; want the 12 after %s (where the walk broke) stale", i, o.Address.Hex(), o.Stale, victim.Hex())
			}
		}
	})
	t.Run("no previous walk", func(t *testing.T) {
		l := far(t, c, farChain{fail: func(ethereum.CallMsg) bool { return true }})
		if _, err := (discovery.Chain{L: l, Retries: 1}).Orchestrators(context.Background()); !errors.Is(err, errInjected) {
			t.Fatalf("err = %v, want the chain's failure", err)
		}
	})
}

// BenchmarkDiscovery walks 300 registered orchestrators at 300 ms a call
// (1,200 calls: six minutes in sequence). Cold: no previous walk; warm: the
// previous walk in the cache. ns/op is one walk.
func BenchmarkDiscovery(b *testing.B) {
	c, want := pool(b, 300)
	l := far(b, c, farChain{delay: 300 * time.Millisecond})
	run := func(b *testing.B, cache func() *discovery.PoolCache) {
		var took []time.Duration
		for i := 0; i < b.N; i++ {
			src := discovery.Chain{L: l, Cache: cache()}
			start := time.Now()
			got, err := src.Orchestrators(context.Background())
			took = append(took, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			check(b, got, want)
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		b.ReportMetric(took[len(took)/2].Seconds(), "median-s")
		if took[len(took)/2] > 10*time.Second {
			b.Fatalf("median walk %v; want under 10 s", took[len(took)/2])
		}
	}
	b.Run("cold", func(b *testing.B) { run(b, func() *discovery.PoolCache { return nil }) })
	warm := &discovery.PoolCache{}
	if _, err := (discovery.Chain{L: c.L, Cache: warm}).Orchestrators(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) { run(b, func() *discovery.PoolCache { return warm }) })
}

// Walk gives every pool member, also one with no service URI (the explorer
// shows it as registered, the gateway cannot use it), reads the reward cut
// and fee share when asked, and hands each member over as soon as it is read.
func TestChainWalkCutsAndMembersAsTheyArrive(t *testing.T) {
	withURI, bare := mustKey(t), mustKey(t)
	c := chaintest.New(t, withURI, bare)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	register := func(k *ecdsa.PrivateKey, rewardCut, feeShare int64) {
		tx, err := c.L.BondingManager.Transact(ctx, c.L.Opts(c.Owner), "register", crypto.PubkeyToAddress(k.PublicKey), big.NewInt(1e18), big.NewInt(rewardCut), big.NewInt(feeShare), big.NewInt(0), big.NewInt(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.L.Wait(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	register(withURI, 250_000, 500_000) // 25 % and 50 % in PERC_DIVISOR parts
	register(bare, 100_000, 0)
	if err := c.L.SetServiceURI(ctx, withURI, "https://w.example:8935"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	arrived := map[common.Address]bool{}
	src := discovery.Chain{L: c.L, Cuts: true, OnMember: func(o discovery.Orchestrator) {
		mu.Lock()
		defer mu.Unlock()
		arrived[o.Address] = true
	}}
	p, err := src.Walk(ctx)
	if err != nil || p.Incomplete != nil {
		t.Fatalf("walk: %v (incomplete: %v)", err, p.Incomplete)
	}
	w, b := crypto.PubkeyToAddress(withURI.PublicKey), crypto.PubkeyToAddress(bare.PublicKey)
	got := map[common.Address]discovery.Orchestrator{}
	for _, o := range p.Members {
		got[o.Address] = o
	}
	if len(p.Members) != 2 || got[w].RewardCut != 250_000 || got[w].FeeShare != 500_000 || got[w].ServiceURI != "https://w.example:8935" || got[b].RewardCut != 100_000 || got[b].ServiceURI != "" {
		t.Errorf("members = %+v; want both, with their cuts, only one with a URI", p.Members)
	}
	if !arrived[w] || !arrived[b] {
		t.Errorf("handed over as read: %v, want both members", arrived)
	}
	os, err := src.Orchestrators(ctx)
	if err != nil || len(os) != 1 || os[0].Address != w {
		t.Errorf("Orchestrators = %+v, %v; want only the member with a service URI", os, err)
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
