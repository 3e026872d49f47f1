// Package discovery finds orchestrators the three ways go-livepeer gateways
// do: the on-chain BondingManager pool with each one's ServiceRegistry URI, a
// static list, and a webhook answering [{"address":"<uri>"}].
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/contracts"
)

// Orchestrator is one discovered orchestrator.
type Orchestrator struct {
	Address    common.Address // zero when the source does not know it (static, webhook)
	ServiceURI string
	Stake      string // total stake in wei, decimal; empty when unknown
	Active     bool
	// Stale: this walk could not read it (its calls failed, or the walk
	// broke before reaching it), so these are the previous walk's facts.
	Stale bool
	// RewardCut and FeeShare are the BondingManager's getTranscoder cuts in
	// parts per million (PERC_DIVISOR: 1 000 000 = 100 %, go-livepeer
	// eth/client.go); read only when Chain.Cuts is set, else zero.
	RewardCut, FeeShare int64
}

// Pool is one pool walk as Chain.Walk returns it.
type Pool struct {
	// Members is every pool member in pool order, with or without a
	// service URI; Stale ones stand in for what this walk could not read.
	Members []Orchestrator
	// Incomplete says why some members are Stale (facts unread, or the walk
	// broke and the previous walk's tail stands in); nil for a full walk.
	Incomplete error
}

// Source lists orchestrators.
type Source interface {
	Orchestrators(ctx context.Context) ([]Orchestrator, error)
}

// Chain walks the BondingManager pool (getFirstTranscoderInPool, then
// getNextTranscoderInPool until the zero address, as go-livepeer's
// eth/client.go TranscoderPool does) and reads each member's service URI
// (ServiceRegistry), total stake and active flag.
//
// At mainnet latency (50–300 ms a call, ~100 orchestrators × 4 calls) a walk
// in sequence takes longer than a round, so the calls overlap: the linked
// list needs each hop's answer before the next, so Chain first gathers the
// addresses it expects to meet (the previous walk's, kept in Cache, and every
// address that ever set a service URI, from the ServiceRegistry's
// ServiceURIUpdate logs) and asks getNextTranscoderInPool for all of them in
// parallel while the walk follows the links from getFirstTranscoderInPool;
// only an address no hint knew costs a hop in sequence. Each member's facts
// are read by the same bounded worker pool as soon as the walk meets it. The
// pool read is still the chain's: hints only decide which calls go first.
//
// Every call has its own timeout and is retried with backoff. An orchestrator
// whose fact calls still fail keeps its entry from the previous walk, marked
// Stale; when the walk itself breaks (a hop that keeps failing), the previous
// walk's members after that point are kept, marked Stale. Only a walk that
// cannot start and has no previous walk to fall back on fails.
//
// Chain is a value: Cache (a pointer) is what carries the previous walk from
// one round to the next; nil keeps nothing.
type Chain struct {
	L     *contracts.Livepeer
	Cache *PoolCache
	// Parallel bounds calls in flight (DefaultParallel; at most MaxParallel).
	Parallel int
	// CallTimeout bounds one call (DefaultCallTimeout).
	CallTimeout time.Duration
	// Retries is how often a failed call is tried again (DefaultRetries; at
	// most MaxRetries).
	Retries int
	// Deadline bounds the whole walk (DefaultWalkDeadline; at most
	// MaxWalkDeadline).
	Deadline time.Duration
	Logger   *slog.Logger
	// Cuts also reads each member's reward cut and fee share
	// (getTranscoder): one more call per member, which the explorer shows
	// and a gateway does not need.
	Cuts bool
	// OnMember, when set, is given each member's facts as soon as this walk
	// has read them (not the stale stand-ins), from several goroutines at
	// once and in no fixed order: a caller can show a walk in progress.
	OnMember func(Orchestrator)
}

// Bounds of a pool walk that no chain can move.
const (
	// MaxPool bounds the pool walk so a malformed (cyclic) list cannot loop forever.
	MaxPool             = 1000
	DefaultParallel     = 64
	MaxParallel         = 128
	DefaultCallTimeout  = 5 * time.Second
	DefaultRetries      = 3
	MaxRetries          = 5
	DefaultWalkDeadline = 45 * time.Second
	MaxWalkDeadline     = 2 * time.Minute
	// retryBackoff is the wait before the first retry; it doubles per retry.
	retryBackoff = 100 * time.Millisecond
)

// PoolCache is the last pool walk, shared by the rounds of one process.
type PoolCache struct {
	mu    sync.Mutex
	order []common.Address                // pool order of the last walk
	known map[common.Address]Orchestrator // last good facts per address
}

func (p *PoolCache) snapshot() ([]common.Address, map[common.Address]Orchestrator) {
	if p == nil {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	known := make(map[common.Address]Orchestrator, len(p.known))
	for a, o := range p.known {
		known[a] = o
	}
	return append([]common.Address(nil), p.order...), known
}

func (p *PoolCache) store(order []common.Address, fresh map[common.Address]Orchestrator) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known == nil {
		p.known = map[common.Address]Orchestrator{}
	}
	in := make(map[common.Address]bool, len(order))
	for _, a := range order {
		in[a] = true
	}
	for a := range p.known { // left the pool: forget
		if !in[a] {
			delete(p.known, a)
		}
	}
	for a, o := range fresh {
		p.known[a] = o
	}
	p.order = order
}

func (c Chain) settings() (parallel, retries int, callTimeout, deadline time.Duration) {
	parallel, retries, callTimeout, deadline = c.Parallel, c.Retries, c.CallTimeout, c.Deadline
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	parallel = min(parallel, MaxParallel)
	if retries <= 0 {
		retries = DefaultRetries
	}
	retries = min(retries, MaxRetries)
	if callTimeout <= 0 {
		callTimeout = DefaultCallTimeout
	}
	if deadline <= 0 {
		deadline = DefaultWalkDeadline
	}
	return parallel, retries, callTimeout, min(deadline, MaxWalkDeadline)
}

// retry runs f with a per-call timeout until it succeeds, retries are spent
// or ctx ends, backing off between tries.
func retry[T any](ctx context.Context, retries int, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	var zero T
	var err error
	wait := retryBackoff
	for try := 0; try <= retries; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return zero, fmt.Errorf("%w (after %d tries, last: %v)", ctx.Err(), try, err)
			case <-time.After(wait):
			}
			wait *= 2
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		v, e := f(cctx)
		cancel()
		if e == nil {
			return v, nil
		}
		err = e
		if ctx.Err() != nil {
			break
		}
	}
	return zero, err
}

// link is one getNextTranscoderInPool answer, asked ahead of the walk.
type link struct {
	done chan struct{}
	next common.Address
	err  error
}

// Orchestrators implements Source: registered transcoders with a service
// URI, in pool order. Entries whose facts are from an earlier walk have
// Stale set (and are logged).
func (c Chain) Orchestrators(ctx context.Context) ([]Orchestrator, error) {
	p, err := c.Walk(ctx)
	if err != nil {
		return nil, err
	}
	res := []Orchestrator{}
	for _, o := range p.Members {
		if o.ServiceURI != "" {
			res = append(res, o)
		}
	}
	return res, nil
}

// Walk walks the pool once: every member, with or without a service URI,
// in pool order. It fails only when the walk cannot start and no earlier
// walk (Cache) can stand in; a walk that read only part of the pool returns
// what it has, the rest Stale, and says why in Pool.Incomplete.
func (c Chain) Walk(ctx context.Context) (Pool, error) {
	parallel, retries, callTimeout, deadline := c.settings()
	ctx, cancel := context.WithTimeout(ctx, deadline)
	var wg sync.WaitGroup
	// Hints the walk did not need are cancelled, not awaited.
	defer func() { cancel(); wg.Wait() }()
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	start := time.Now()
	prevOrder, prevKnown := c.Cache.snapshot()
	sem := make(chan struct{}, parallel)
	call := func(ctx context.Context, ct *contracts.Contract, method string, args ...any) ([]any, error) {
		return retry(ctx, retries, callTimeout, func(ctx context.Context) ([]any, error) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-sem }()
			return ct.Call(ctx, method, args...)
		})
	}

	// Hints: the previous walk first (most likely the pool now), then every
	// address that ever set a URI. A hint not in the pool costs one call.
	var lmu sync.Mutex
	links := map[common.Address]*link{}
	ask := func(a common.Address) {
		lmu.Lock()
		if _, ok := links[a]; ok || len(links) >= MaxPool {
			lmu.Unlock()
			return
		}
		l := &link{done: make(chan struct{})}
		links[a] = l
		lmu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(l.done)
			out, err := call(ctx, c.L.BondingManager, "getNextTranscoderInPool", a)
			if err != nil {
				l.err = err
				return
			}
			l.next = out[0].(common.Address)
		}()
	}
	for _, a := range prevOrder {
		ask(a)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		addrs, err := c.uriSetters(ctx, retries, callTimeout)
		if err != nil {
			log.Debug("discovery: no ServiceURIUpdate logs to walk ahead with; hops follow one by one", "err", err)
			return
		}
		for _, a := range addrs {
			ask(a)
		}
	}()

	type facts struct {
		done   chan struct{}
		o      Orchestrator
		err    error
		hasURI bool
	}
	var order []common.Address
	got := map[common.Address]*facts{}
	read := func(a common.Address) {
		f := &facts{done: make(chan struct{}), o: Orchestrator{Address: a}}
		got[a] = f
		var fwg sync.WaitGroup
		var fmu sync.Mutex
		fail := func(what string, err error) {
			fmu.Lock()
			defer fmu.Unlock()
			if f.err == nil {
				f.err = fmt.Errorf("%s of %s: %w", what, a.Hex(), err)
			}
		}
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			uri, err := retry(ctx, retries, callTimeout, func(ctx context.Context) (string, error) {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return "", ctx.Err()
				}
				defer func() { <-sem }()
				return c.L.ServiceURI(ctx, a)
			})
			if err != nil {
				fail("service URI", err)
				return
			}
			f.o.ServiceURI = uri
		}()
		// The BondingManager views, one call each, all at once.
		type view struct {
			what, method string
			set          func(out []any) error
		}
		views := []view{
			{"stake", "transcoderTotalStake", func(out []any) error { f.o.Stake = fmt.Sprint(out[0]); return nil }},
			{"active", "isActiveTranscoder", func(out []any) error { f.o.Active, _ = out[0].(bool); return nil }},
		}
		if c.Cuts {
			views = append(views, view{"cuts", "getTranscoder", func(out []any) error {
				if len(out) < 3 {
					return fmt.Errorf("getTranscoder gave %d values, want at least 3", len(out))
				}
				f.o.RewardCut, f.o.FeeShare = ppm(out[1]), ppm(out[2])
				return nil
			}})
		}
		for _, v := range views {
			fwg.Add(1)
			go func() {
				defer fwg.Done()
				out, err := call(ctx, c.L.BondingManager, v.method, a)
				if err == nil {
					err = v.set(out)
				}
				if err != nil {
					fail(v.what, err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fwg.Wait()
			if f.err == nil && c.OnMember != nil {
				c.OnMember(f.o)
			}
			close(f.done)
		}()
	}

	// The walk.
	var walkErr error
	out, err := retry(ctx, retries, callTimeout, func(ctx context.Context) ([]any, error) {
		return c.L.BondingManager.Call(ctx, "getFirstTranscoderInPool")
	})
	addr := common.Address{}
	if err != nil {
		walkErr = fmt.Errorf("pool walk: first: %w", err)
	} else {
		addr = out[0].(common.Address)
	}
	for walkErr == nil && addr != (common.Address{}) && len(order) < MaxPool {
		if _, seen := got[addr]; seen {
			walkErr = fmt.Errorf("pool walk: %s listed twice (a cycle)", addr.Hex())
			break
		}
		order = append(order, addr)
		read(addr)
		lmu.Lock()
		l, ok := links[addr]
		lmu.Unlock()
		var next common.Address
		if ok {
			select {
			case <-l.done:
			case <-ctx.Done():
			}
			select {
			case <-l.done:
				next, err = l.next, l.err
			default:
				err = ctx.Err()
			}
		} else { // no hint knew addr: one hop in sequence
			var out []any
			out, err = retry(ctx, retries, callTimeout, func(ctx context.Context) ([]any, error) {
				return c.L.BondingManager.Call(ctx, "getNextTranscoderInPool", addr)
			})
			if err == nil {
				next = out[0].(common.Address)
			}
		}
		if err != nil {
			walkErr = fmt.Errorf("pool walk after %s: %w", addr.Hex(), err)
			break
		}
		addr = next
	}

	var res []Orchestrator
	fresh := map[common.Address]Orchestrator{}
	stale := 0
	var factErr error
	keep := func(a common.Address, why error) {
		factErr = errors.Join(factErr, why)
		if o, ok := prevKnown[a]; ok {
			o.Stale = true
			stale++
			res = append(res, o)
			log.Warn("discovery: orchestrator keeps its last known entry (stale)", "address", a.Hex(), "service_uri", o.ServiceURI, "err", why)
			return
		}
		log.Warn("discovery: orchestrator skipped: its facts could not be read and no earlier walk knows it", "address", a.Hex(), "err", why)
	}
	for _, a := range order {
		f := got[a]
		<-f.done
		if f.err != nil {
			keep(a, f.err)
			continue
		}
		fresh[a] = f.o
		res = append(res, f.o)
	}
	if walkErr != nil {
		if len(prevOrder) == 0 { // nothing to mark the unwalked rest stale against
			return Pool{}, walkErr
		}
		// The rest of the previous walk after the last address reached.
		tail := prevOrder
		if len(order) > 0 {
			tail = nil
			for i, a := range prevOrder {
				if a == order[len(order)-1] {
					tail = prevOrder[i+1:]
					break
				}
			}
		}
		log.Warn("discovery: pool walk broke; the rest of the previous walk is kept", "walked", len(order), "kept", len(tail), "err", walkErr)
		walked := map[common.Address]bool{}
		for _, a := range order {
			walked[a] = true
		}
		for _, a := range tail {
			if o, ok := prevKnown[a]; ok && !walked[a] {
				order = append(order, a)
				o.Stale = true
				stale++
				res = append(res, o)
			}
		}
	}
	c.Cache.store(order, fresh)
	log.Info("discovery: pool walked", "members", len(order), "read", len(fresh), "stale", stale, "took", time.Since(start))
	return Pool{Members: res, Incomplete: errors.Join(walkErr, factErr)}, nil
}

// ppm reads one getTranscoder cut (a uint256 no larger than PERC_DIVISOR).
func ppm(v any) int64 {
	if b, ok := v.(*big.Int); ok && b.IsInt64() {
		return b.Int64()
	}
	return 0
}

// uriSetters are the addresses of every ServiceURIUpdate the registry
// logged: the walk's hints.
func (c Chain) uriSetters(ctx context.Context, retries int, timeout time.Duration) ([]common.Address, error) {
	topic := crypto.Keccak256Hash([]byte("ServiceURIUpdate(address,string)"))
	logs, err := retry(ctx, retries, timeout, func(ctx context.Context) ([]types.Log, error) {
		return c.L.Backend.FilterLogs(ctx, ethereum.FilterQuery{
			FromBlock: big.NewInt(0),
			Addresses: []common.Address{c.L.ServiceRegistry.Address()},
			Topics:    [][]common.Hash{{topic}},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ServiceURIUpdate logs: %w", err)
	}
	var out []common.Address
	seen := map[common.Address]bool{}
	for _, l := range logs {
		if len(l.Topics) < 2 {
			continue
		}
		a := common.BytesToAddress(l.Topics[1].Bytes())
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

// Static is a fixed list of service URIs.
type Static []string

// Orchestrators implements Source.
func (s Static) Orchestrators(context.Context) ([]Orchestrator, error) {
	var os []Orchestrator
	for _, u := range s {
		if err := checkURI(u); err != nil {
			return nil, err
		}
		os = append(os, Orchestrator{ServiceURI: u, Active: true})
	}
	return os, nil
}

// Webhook GETs a go-livepeer orchestrator webhook.
type Webhook struct {
	URL    string
	Client *http.Client // nil: a client with a 3 s timeout, as go-livepeer
}

// MaxWebhookBody bounds the webhook response.
const MaxWebhookBody = 1 << 20

// ErrWebhook is any failure of the webhook source.
var ErrWebhook = errors.New("orchestrator webhook")

// Orchestrators implements Source.
func (w Webhook) Orchestrators(ctx context.Context) ([]Orchestrator, error) {
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 3 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebhook, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebhook, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", ErrWebhook, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxWebhookBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrWebhook, err)
	}
	if len(body) > MaxWebhookBody {
		return nil, fmt.Errorf("%w: response over %d bytes", ErrWebhook, MaxWebhookBody)
	}
	var list []struct {
		Address string   `json:"address"`
		Score   *float64 `json:"score,omitempty"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%w: want [{\"address\":\"<uri>\"}]: %v", ErrWebhook, err)
	}
	var os []Orchestrator
	for _, e := range list {
		if err := checkURI(e.Address); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrWebhook, err)
		}
		os = append(os, Orchestrator{ServiceURI: e.Address, Active: true})
	}
	return os, nil
}

func checkURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("orchestrator URI %q is not an http(s) URL", s)
	}
	return nil
}
