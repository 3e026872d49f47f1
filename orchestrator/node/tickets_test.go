package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
)

// rpcGate is a JSON-RPC proxy in front of the simulated chain that, while
// held, keeps every transaction submission waiting until its caller gives
// up: redemptions stay queued, everything else answers.
type rpcGate struct {
	target string
	hold   atomic.Bool
}

func (g *rpcGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if g.hold.Load() && bytes.Contains(body, []byte("eth_sendRawTransaction")) {
		<-r.Context().Done()
		http.Error(w, "held", http.StatusServiceUnavailable)
		return
	}
	resp, err := http.Post(g.target, r.Header.Get("Content-Type"), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func storedTickets(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// Winning tickets queued when the orchestrator stops are on disk, and the
// next start redeems them: the gateway's deposit pays all of them. (Queued
// winners were dropped at shutdown.)
func TestWinningTicketsSurviveRestart(t *testing.T) {
	t.Setenv(keyEnv, "")
	oKey, _ := crypto.GenerateKey()
	gwKey, _ := crypto.GenerateKey()
	c := chaintest.New(t, oKey, gwKey)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deposit := big.NewInt(1e17)
	if err := c.L.FundDepositAndReserve(ctx, gwKey, deposit, big.NewInt(1e17)); err != nil {
		t.Fatal(err)
	}
	rpc := &rpcGate{target: c.URL}
	proxy := httptest.NewServer(rpc)
	t.Cleanup(proxy.Close)
	a := c.L.Addresses()
	store := t.TempDir()
	addr := freeAddr(t)
	c.Register(t, oKey, "https://"+addr)
	// Win probability 1: every ticket wins.
	args := []string{"-network", "onchain", "-ethUrl", proxy.URL, "-eth.key-file", keyFile(t, hex.EncodeToString(crypto.FromECDSA(oKey))),
		"-eth.ticket-broker", a.TicketBroker.Hex(), "-eth.rounds-manager", a.RoundsManager.Hex(), "-aiModels", priced,
		"-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", "", "-mean-latency", "10ms", "-jitter", "0",
		"-ticket.face-value", "1e15", "-ticketEV", "999999999999999", "-ticket.params-blocks", "100000", "-ticket.store", store}
	g := &gateway.Gateway{Sender: pm.NewSender(pm.NewSigner(gwKey))}
	uri := "https://" + addr

	rpc.hold.Store(true)
	first, stopFirst := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(first, args) }()
	waitDiscover(t, g, uri, done)
	const jobs = 3
	for i := range jobs {
		if status, body := job(t, g, uri, nil); status != http.StatusOK {
			t.Fatalf("paid job %d: %d %s", i, status, body)
		}
	}
	if n := storedTickets(t, store); n != jobs {
		t.Fatalf("%d winning tickets on disk while redemption is held, want %d", n, jobs)
	}
	stopFirst()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	if n := storedTickets(t, store); n != jobs {
		t.Fatalf("%d winning tickets on disk after shutdown, want %d", n, jobs)
	}
	info, err := c.L.SenderInfo(ctx, crypto.PubkeyToAddress(gwKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if info.Deposit.Cmp(deposit) != 0 {
		t.Fatalf("a ticket was redeemed while redemption was held: deposit %v", info.Deposit)
	}

	rpc.hold.Store(false)
	before := c.Balance(t, oKey)
	second, stopSecond := context.WithCancel(ctx)
	done = make(chan error, 1)
	go func() { done <- Run(second, args) }()
	t.Cleanup(func() {
		stopSecond()
		if err := <-done; err != nil {
			t.Errorf("second run: %v", err)
		}
	})
	want := new(big.Int).Sub(deposit, big.NewInt(jobs*1e15))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		info, err := c.L.SenderInfo(ctx, crypto.PubkeyToAddress(gwKey.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if info.Deposit.Cmp(want) == 0 && storedTickets(t, store) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: gateway deposit %v (want %v), %d tickets still on disk", info.Deposit, want, storedTickets(t, store))
		}
	}
	if c.Balance(t, oKey).Cmp(before) <= 0 {
		t.Errorf("orchestrator balance did not grow from %v with the redeemed tickets", before)
	}
	if failed, _ := os.ReadDir(filepath.Join(store, "failed")); len(failed) != 0 {
		t.Errorf("%d tickets set aside as failed", len(failed))
	}
}

// waitDiscover waits until GetOrchestrator answers at uri, or run ends.
func waitDiscover(t *testing.T, g *gateway.Gateway, uri string, done <-chan error) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		_, _, err := g.Discover(dctx, uri, capability.TextToImage, model)
		dcancel()
		if err == nil {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("orchestrator exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetOrchestrator at %s: %v", uri, err)
		}
	}
}
