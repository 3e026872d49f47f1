package explorerapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/contracts"
	explorerapi "github.com/lpgauge/lpgauge/explorer-api"
	"github.com/lpgauge/lpgauge/explorer-api/seed"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// slowChain answers every contract call after delay: a mainnet RPC endpoint
// seen from far away.
type slowChain struct {
	contracts.Backend
	delay time.Duration
}

func (s slowChain) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Backend.CallContract(ctx, msg, block)
}

// With 300 registered orchestrators and 300 ms per chain call (a pool walk
// is 1,200 calls: six minutes in sequence), every page answers within its
// deadline (8 s) with no chain error, showing the walk so far marked partial.
// Before, the walk ran on the request path under a mutex: every page waited
// out its deadline and said the chain does not answer.
func TestPagesAnswerWhileTheChainIsSlow(t *testing.T) {
	n := seed.Probes(t)
	st, err := store.NewClickHouse(n.DB.Conn, n.DB.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := seed.NewChain(t)
	c.Orchestrator(t, seed.A, 1500, 25, 50, "https://a.example:8935")
	c.RegisterMany(t, 299)
	slow, err := contracts.New(slowChain{Backend: c.L.Backend, delay: 300 * time.Millisecond}, nil, c.L.Addresses())
	if err != nil {
		t.Fatal(err)
	}
	const deadline = 8 * time.Second // the product's -query-timeout
	h := explorerapi.New(explorerapi.Config{Chain: &explorerapi.OnChain{L: slow}, QueryTimeout: deadline, Now: func() time.Time { return n.Now }}, st)
	srv := httptest.NewServer(h)
	defer srv.Close()
	paths := []string{"/api/overview", "/api/leaderboard?" + q("pipeline", seed.T2I, "model", seed.M1), "/api/orchestrators/" + seed.A}
	sawA := false
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(200 * time.Millisecond) {
		for _, path := range paths {
			t0 := time.Now()
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if took := time.Since(t0); took > deadline || resp.StatusCode != 200 {
				t.Fatalf("%s: %d after %s (deadline %s): %s", path, resp.StatusCode, took, deadline, body)
			}
			var page struct {
				OnChain *struct {
					Error         string `json:"error"`
					Partial       bool   `json:"partial"`
					Orchestrators int    `json:"orchestrators"`
					Registered    bool   `json:"registered"`
				} `json:"on_chain"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				continue // the leaderboard is a list
			}
			if oc := page.OnChain; oc != nil {
				if oc.Error != "" {
					t.Fatalf("%s: on_chain error %q while the chain answers slowly", path, oc.Error)
				}
				if !oc.Partial {
					t.Fatalf("%s: on_chain %+v not marked partial during the first walk of 300 at 300 ms a call", path, oc)
				}
				if path == "/api/overview" && oc.Orchestrators > 0 || oc.Registered {
					sawA = true
				}
			}
		}
	}
	if !sawA {
		t.Error("the walk's first results never reached the pages")
	}
}

// Hostile paths are 4xx, never 500 (overlong UTF-8 "%c0%ae%c0%ae" gave 500),
// and a gzip-encoded error body says so (Content-Encoding was missing on the
// file server's errors, so clients showed compressed bytes).
func TestHostilePathsAndGzipErrors(t *testing.T) {
	f := newFixture(t)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, path := range []string{"/%c0%ae%c0%ae/etc/passwd", "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "/%ff%fe", "/a%00b", "/..%2f..%2fetc/passwd", "/nope.html", "/api/nope", "/api/orchestrators/0xzz"} {
		for _, gz := range []bool{false, true} {
			req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
			if gz {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("GET %s (gzip %v): %d, want 4xx", path, gz, resp.StatusCode)
			}
			if !gz {
				continue
			}
			if resp.Header.Get("Content-Encoding") != "gzip" {
				t.Errorf("GET %s: gzip body without Content-Encoding: gzip (%q)", path, resp.Header.Get("Content-Encoding"))
				continue
			}
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Errorf("GET %s: body is not gzip: %v", path, err)
				continue
			}
			plain, err := io.ReadAll(zr)
			if err != nil || !strings.Contains(string(plain), "not found") && !strings.Contains(string(plain), "error") {
				t.Errorf("GET %s: gunzipped body %q (%v)", path, plain, err)
			}
		}
	}
}

// A window of every probe ever (since=0) is refused before any store work.
func TestUnboundedWindowRefused(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/api/overview?since=0", "/api/leaderboard?" + q("pipeline", seed.T2I, "model", seed.M1, "since", "0"), "/api/orchestrators/" + seed.A + "?since=0"} {
		var e struct{ Error string }
		get(t, f.srv.URL, path, 400, &e)
		if !strings.Contains(e.Error, "window") {
			t.Errorf("%s: %q, want a shorter window asked for", path, e.Error)
		}
	}
}

// flakyChain fails every getTranscoder call about one address while fail is
// set: an RPC provider that keeps timing out on some calls.
type flakyChain struct {
	contracts.Backend
	about common.Address
	fail  *atomic.Bool
}

var getTranscoder = crypto.Keccak256([]byte("getTranscoder(address)"))[:4]

func (f flakyChain) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	if f.fail.Load() && bytes.HasPrefix(msg.Data, getTranscoder) && bytes.Contains(msg.Data, f.about.Bytes()) {
		return nil, errors.New("injected: getTranscoder keeps failing")
	}
	return f.Backend.CallContract(ctx, msg, block)
}

// The explorer's walk is gateway/discovery's: when one orchestrator's calls
// keep failing, its page keeps the facts of the last walk that read them,
// marked stale, and the others show this walk's facts. Before, the explorer
// walked the pool itself and one failed call threw the whole walk away.
func TestChainFactsStaleWhenCallsKeepFailing(t *testing.T) {
	f := newFixture(t)
	fail := &atomic.Bool{}
	l, err := contracts.New(flakyChain{Backend: f.chain.L.Backend, about: common.HexToAddress(seed.A), fail: fail}, nil, f.chain.L.Addresses())
	if err != nil {
		t.Fatal(err)
	}
	oc := &explorerapi.OnChain{L: l}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := oc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := oc.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "cuts") {
		t.Fatalf("second walk with A's getTranscoder failing: err %v, want the failed cuts named", err)
	}
	h := explorerapi.New(explorerapi.Config{Chain: oc, Now: func() time.Time { return f.net.Now }, QueryTimeout: 5 * time.Second}, f.st)
	srv := httptest.NewServer(h)
	defer srv.Close()
	var a, e profile
	get(t, srv.URL, "/api/orchestrators/"+seed.A, 200, &a)
	get(t, srv.URL, "/api/orchestrators/"+seed.E, 200, &e)
	if a.OnChain == nil || !a.OnChain.Stale || !a.OnChain.Registered || a.OnChain.RewardCutPercent != 25 || a.OnChain.ServiceURI != "https://a.example:8935" {
		t.Errorf("A on chain = %+v, want the first walk's facts (registered, reward cut 25 %%) marked stale", a.OnChain)
	}
	if e.OnChain == nil || e.OnChain.Stale || !e.OnChain.Registered || e.OnChain.RewardCutPercent != 10 || e.OnChain.FeeSharePercent != 80 {
		t.Errorf("E on chain = %+v, want this walk's facts (reward cut 10 %%, fee share 80 %%), not stale", e.OnChain)
	}
}
