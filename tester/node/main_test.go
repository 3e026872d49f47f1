package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

func TestMain(m *testing.M) {
	// The kill -9 test re-runs this binary as a tester process.
	if args := os.Getenv("LPGAUGE_TESTER_CHILD"); args != "" {
		if err := Run(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	chtest.Main(m)
}

func count(t *testing.T, db *chtest.DB, where string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Name+".probe_results WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// `tester -once` (what `make demo` runs) probes a static list, prints a table
// and leaves one row per probe in ClickHouse, under the key's address.
func TestOnceWritesRowsAndPrintsTable(t *testing.T) {
	db := chtest.NewDB(t)
	good := orchtest.New(t, orchtest.Behaviour{})
	bad := orchtest.New(t, orchtest.Behaviour{Status: 500, Body: "boom"})
	key := filepath.Join(t.TempDir(), "key")
	// Address of this well-known test key: 0x7e5f4552091a69125d5dfcb7b8c2659029395bdf.
	if err := os.WriteFile(key, []byte("0000000000000000000000000000000000000000000000000000000000000001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{
		"-region", "FRA", "-once", "-tester-key", key, "-listen", "",
		"-orchestrators", good.Target() + "," + bad.Target(),
		"-models", "text-to-image:stabilityai/sdxl-turbo",
		"-simulate-rtt", "-spool-dir", t.TempDir(),
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "2 probes, 1 success, 1 failure") || !strings.Contains(out.String(), "orchestrator_error/http_500") {
		t.Errorf("table does not show the round:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "[2/2]") {
		t.Errorf("no progress lines:\n%s", errOut.String())
	}
	if n := count(t, db, "tester_id = '0x7e5f4552091a69125d5dfcb7b8c2659029395bdf' AND region = 'FRA'"); n != 2 {
		t.Errorf("stored %d rows for the tester, want 2", n)
	}
	// The default -network offchain asks GetOrchestrator before each probe
	// and stores its round trip as the discovery phase.
	if n := count(t, db, "discovery_us > 0"); n != 2 || good.Discoveries.Load() == 0 {
		t.Errorf("%d rows with a discovery phase (want 2), %d GetOrchestrator calls", n, good.Discoveries.Load())
	}
	// FRA simulates 2 ms of network distance on every connection.
	if n := count(t, db, "outcome = 'success' AND connect_us >= 2000"); n != 1 {
		t.Errorf("%d successful rows with the simulated connect delay, want 1", n)
	}
}

// A scheduled tester stopped by a signal finishes the probe in flight and
// stores it before exiting: nothing measured is lost on shutdown.
func TestScheduledShutdownDrainsAndFlushes(t *testing.T) {
	db := chtest.NewDB(t)
	slow := orchtest.New(t, orchtest.Behaviour{Delay: 1500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var errOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{
			"-region", "FRA", "-interval", "1s", "-round-deadline", "10s", "-listen", "127.0.0.1:0", "-spool-dir", t.TempDir(),
			"-orchestrators", slow.Target(), "-models", "text-to-image:m",
			"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
		}, &bytes.Buffer{}, &errOut)
	}()
	// Wait until a probe is in flight, then stop.
	for deadline := time.Now().Add(10 * time.Second); slow.Calls.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no probe started\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tester did not stop")
	}
	calls := slow.Calls.Load()
	if n := count(t, db, "outcome = 'success'"); n != uint64(calls) {
		t.Errorf("orchestrator served %d probes, %d stored as successes\n%s", calls, n, errOut.String())
	}
}

// Bad configuration is refused with a message that names the flag and says
// what to write instead.
func TestBadConfigErrors(t *testing.T) {
	orch := "0x1111111111111111111111111111111111111111=http://127.0.0.1:1"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no region", []string{"-once", "-orchestrators", orch, "-models", "text-to-image:m"}, "-region is required"},
		{"transcoding region", []string{"-region", "ATL", "-once", "-orchestrators", orch, "-models", "text-to-image:m"}, "tests transcoding only"},
		{"bad address", []string{"-region", "FRA", "-once", "-orchestrators", "0x12=http://x:1", "-models", "text-to-image:m"}, "0x and 40 hex digits"},
		{"bad uri", []string{"-region", "FRA", "-once", "-orchestrators", "0x1111111111111111111111111111111111111111=ftp://x", "-models", "text-to-image:m"}, "want http(s)://host:port"},
		{"unknown pipeline", []string{"-region", "FRA", "-once", "-orchestrators", orch, "-models", "text-to-paint:m"}, "unknown pipeline \"text-to-paint\""},
		{"no models, nothing to ask with", []string{"-region", "FRA", "-once", "-network", "none", "-orchestrators", orch}, "no default model list"},
		{"no schedule", []string{"-region", "FRA", "-orchestrators", orch, "-models", "text-to-image:m"}, "give -schedule"},
		{"bad cron", []string{"-region", "FRA", "-schedule", "every five", "-orchestrators", orch, "-models", "text-to-image:m"}, "bad -schedule"},
		{"bad pipeline timeout", []string{"-region", "FRA", "-once", "-pipeline-timeout", "llm=soon", "-orchestrators", orch, "-models", "text-to-image:m"}, "want pipeline=duration"},
		{"post stats without secret", []string{"-region", "FRA", "-once", "-post-stats-url", "http://x/api/post_stats", "-orchestrators", orch, "-models", "text-to-image:m"}, "POST_STATS_SECRET"},
		{"bad control", []string{"-region", "FRA", "-once", "-control", "0x1111111111111111111111111111111111111111=http://x:1", "-orchestrators", orch, "-models", "text-to-image:m"}, "exactly one"},
		{"unknown discovery", []string{"-region", "FRA", "-once", "-discovery", "dns", "-models", "text-to-image:m"}, "want static, chain or webhook"},
		{"chain without rpc", []string{"-region", "FRA", "-once", "-discovery", "chain", "-eth.bonding-manager", "0x1111111111111111111111111111111111111111", "-eth.service-registry", "0x1111111111111111111111111111111111111111"}, "needs -eth.url"},
		{"chain without registry", []string{"-region", "FRA", "-once", "-discovery", "chain", "-eth.url", "http://127.0.0.1:8545", "-eth.bonding-manager", "0x1111111111111111111111111111111111111111"}, "needs -eth.service-registry"},
		{"chain bad address", []string{"-region", "FRA", "-once", "-discovery", "chain", "-eth.url", "http://127.0.0.1:8545", "-eth.bonding-manager", "0x12", "-eth.service-registry", "0x1111111111111111111111111111111111111111"}, "-eth.bonding-manager \"0x12\""},
		{"webhook without url", []string{"-region", "FRA", "-once", "-discovery", "webhook"}, "needs -webhook-url"},
		{"static list with webhook", []string{"-region", "FRA", "-once", "-discovery", "webhook", "-webhook-url", "http://x/o", "-orchestrators", orch}, "cannot be combined"},
		{"unknown network", []string{"-region", "FRA", "-once", "-network", "mainnet", "-orchestrators", orch, "-models", "text-to-image:m"}, "want offchain, onchain or none"},
		{"live size not macroblocks", []string{"-region", "FRA", "-once", "-live.size", "100x64", "-orchestrators", orch, "-models", "live-video-to-video:noop"}, "multiples of 16"},
		{"live size malformed", []string{"-region", "FRA", "-once", "-live.size", "big", "-orchestrators", orch, "-models", "live-video-to-video:noop"}, "want WxH"},
		{"live stream too long", []string{"-region", "FRA", "-once", "-live.duration", "1h", "-orchestrators", orch, "-models", "live-video-to-video:noop"}, "live stream length 1h0m0s"},
		{"webhook down", []string{"-region", "FRA", "-once", "-discovery", "webhook", "-webhook-url", "http://127.0.0.1:1/o"}, "orchestrator webhook"},
		{"bad key", []string{"-region", "FRA", "-once", "-tester-key", "/nonexistent/key", "-orchestrators", orch, "-models", "text-to-image:m"}, "read key file"},
		{"bad max ticket EV", []string{"-region", "FRA", "-once", "-maxTicketEV", "lots", "-orchestrators", orch, "-models", "text-to-image:m"}, "-maxTicketEV \"lots\""},
		{"negative max price", []string{"-region", "FRA", "-once", "-maxPricePerUnit", "-1", "-orchestrators", orch, "-models", "text-to-image:m"}, "-maxPricePerUnit \"-1\""},
		{"zero deposit multiplier", []string{"-region", "FRA", "-once", "-depositMultiplier", "0", "-orchestrators", orch, "-models", "text-to-image:m"}, "-depositMultiplier 0"},
		{"ticket broker without rpc", []string{"-region", "FRA", "-once", "-eth.ticket-broker", "0x1111111111111111111111111111111111111111", "-orchestrators", orch, "-models", "text-to-image:m"}, "needs -eth.url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), append(tc.args, "-no-store", "-listen", ""), &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// A tester killed with SIGKILL loses no result it had measured: the results
// sit fsync'd in its spool, and the next start stores them, each once.
func TestKill9KeepsSpooledResults(t *testing.T) {
	db := chtest.NewDB(t)
	orch := orchtest.New(t, orchtest.Behaviour{})
	spool := t.TempDir()
	common := []string{"-region", "FRA", "-listen", "", "-spool-dir", spool,
		"-orchestrators", orch.Target(), "-models", "text-to-image:a,text-to-image:b",
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name}
	// First process: rounds every second, but nothing leaves the spool for
	// an hour, so every result is only on disk when it dies. The round
	// deadline defaults to the period (1 s): on a loaded machine a round's
	// second probe then missed it and was stored as an excused
	// round_deadline row the orchestrator never served, so more rows than
	// calls failed the count. A long deadline keeps rows == calls.
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "LPGAUGE_TESTER_CHILD="+strings.Join(append(common, "-interval", "1s", "-round-deadline", "1m", "-flush-interval", "1h", "-batch-size", "100000"), "\x1f"))
	var childErr bytes.Buffer
	child.Stderr = &childErr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); orch.Calls.Load() < 4; {
		if time.Now().After(deadline) {
			_ = child.Process.Kill()
			t.Fatalf("child tester made %d probes\n%s", orch.Calls.Load(), childErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let the last probe's result reach the spool
	_ = child.Process.Signal(syscall.SIGKILL)
	_ = child.Wait()
	served := orch.Calls.Load()
	if n := count(t, db, "1"); n != 0 {
		t.Fatalf("%d rows stored before the kill; the test needs them spooled only", n)
	}

	// Second process: one round; it replays the spool first.
	if err := Run(context.Background(), append(common, "-once"), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	after := orch.Calls.Load()
	total := count(t, db, "1")
	var distinct uint64
	if err := db.Conn.QueryRow(context.Background(), "SELECT uniqExact(probe_id) FROM "+db.Name+".probe_results").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if total != distinct {
		t.Errorf("%d rows for %d probe ids: something stored twice", total, distinct)
	}
	// A probe cut by the kill mid-flight has no result; all others must be there.
	if total < uint64(after)-1 || total > uint64(after) {
		t.Errorf("orchestrator served %d probes (%d before the kill), %d stored", after, served, total)
	}
}

func writeKey(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(hex.EncodeToString(crypto.FromECDSA(k))), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The tester as a gateway on chain: it walks the BondingManager pool over
// JSON-RPC, learns each orchestrator's models from GetOrchestrator, pays
// every probe with tickets, and stores the results; the orchestrator whose
// tickets always win redeems them and its balance grows.
func TestOnChainDiscoveryPaysOrchestrators(t *testing.T) {
	db := chtest.NewDB(t)
	winKey, _ := crypto.GenerateKey()
	otherKey, _ := crypto.GenerateKey()
	testerKey, _ := crypto.GenerateKey()
	c := chaintest.New(t, winKey, otherKey, testerKey)
	// One deadline per chain call: a single one for the whole test also
	// bounded the two tester rounds between them, which take 25-36 s at
	// load 12-20 under -race, and it is not what the test measures.
	chainCtx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	if err := c.L.FundDepositAndReserve(chainCtx(), testerKey, big.NewInt(1e17), big.NewInt(1e17)); err != nil {
		t.Fatal(err)
	}
	face := big.NewInt(1e15)
	var refs []*orchtest.Reference
	for i, k := range []*ecdsa.PrivateKey{winKey, otherKey} {
		pc := payment.Config{FaceValue: face, ParamsValidBlocks: 100000}
		if i == 0 {
			// Win probability 1 − 1e-15: a go-livepeer gateway (and so the
			// tester) refuses tickets whose EV is not below their face value
			// (pm/sender.go:204-206), so not exactly 1.
			pc.TicketEV = new(big.Int).Sub(face, big.NewInt(1))
		}
		r := orchtest.NewReference(t, orchtest.ReferenceConfig{Key: k, Chain: payment.ContractChain{L: c.L, Key: k}, Payment: pc})
		c.Register(t, k, r.URI)
		refs = append(refs, r)
	}
	before := c.Balance(t, winKey)
	a := c.L.Addresses()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{
		"-region", "FRA", "-once", "-listen", "", "-spool-dir", t.TempDir(),
		"-network", "onchain", "-tester-key", writeKey(t, testerKey),
		"-discovery", "chain", "-eth.url", c.URL,
		"-eth.bonding-manager", a.BondingManager.Hex(), "-eth.service-registry", a.ServiceRegistry.Hex(),
		"-eth.ticket-broker", a.TicketBroker.Hex(), "-maxTicketEV", "1e15", "-maxTotalEV", "1e16", // tickets that always win
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "2 probes, 2 success") {
		t.Fatalf("round:\n%s\n%s", out.String(), errOut.String())
	}
	for _, r := range refs {
		where := fmt.Sprintf("orchestrator = '%s' AND model = '%s' AND outcome = 'success' AND discovery_us > 0", r.Address, orchtest.DefaultModel)
		if n := count(t, db, where); n != 1 {
			t.Errorf("%s: %d stored successes with a discovery phase, want 1", r.Address, n)
		}
	}
	refs[0].Receiver.WaitRedemptions()
	for deadline := time.Now().Add(15 * time.Second); c.Balance(t, winKey).Cmp(before) <= 0; {
		if time.Now().After(deadline) {
			t.Fatalf("winning orchestrator's balance did not grow from %v", before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	info, err := c.L.SenderInfo(chainCtx(), crypto.PubkeyToAddress(testerKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if info.Deposit.Cmp(big.NewInt(1e17)) >= 0 {
		t.Errorf("tester deposit not debited by the redemption: %v", info.Deposit)
	}

	// With go-livepeer's default -maxTicketEV (3e12 wei) these tickets
	// (EV 1e15 and 1e14) are too dear: the tester pays nothing and stores
	// both probes as excused, its own limit, never the orchestrators' fault.
	out.Reset()
	err = Run(context.Background(), []string{
		"-region", "FRA", "-once", "-listen", "", "-spool-dir", t.TempDir(),
		"-network", "onchain", "-tester-key", writeKey(t, testerKey),
		"-discovery", "chain", "-eth.url", c.URL,
		"-eth.bonding-manager", a.BondingManager.Hex(), "-eth.service-registry", a.ServiceRegistry.Hex(),
		"-eth.ticket-broker", a.TicketBroker.Hex(),
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("run with default limits: %v\n%s", err, errOut.String())
	}
	if n := count(t, db, "outcome = 'excused' AND error_class = 'tester' AND error_code = 'ticket_ev_above_max'"); n != 2 {
		t.Errorf("%d probes excused for the tester's ticket EV limit, want 2\n%s", n, out.String())
	}
}

// Webhook discovery (go-livepeer's [{"address":"<uri>"}]): addresses come
// from GetOrchestrator, models from the advertised capabilities, or from
// -models when given.
func TestWebhookDiscovery(t *testing.T) {
	db := chtest.NewDB(t)
	a := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/a", "text-to-image:model/b", "live-video-to-video:live"}})
	b := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/c"}})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `[{"address":%q},{"address":%q,"score":0.5}]`, a.URL, b.URL)
	}))
	defer hook.Close()
	common := []string{"-region", "FRA", "-once", "-listen", "", "-spool-dir", t.TempDir(),
		"-discovery", "webhook", "-webhook-url", hook.URL,
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name}
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), common, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	for _, w := range []string{
		"orchestrator = '" + a.Address + "' AND model IN ('model/a', 'model/b') AND outcome = 'success'",
		"orchestrator = '" + b.Address + "' AND model = 'model/c' AND outcome = 'success'",
	} {
		if n := count(t, db, w); n == 0 {
			t.Errorf("no row where %s\n%s", w, out.String())
		}
	}
	// a advertises live-video-to-video (cap 35): its live model is planned
	// and probed like a batch one; this rig has no live endpoint, so the
	// start is refused (404). b advertises no live model: no live row.
	if n := count(t, db, "1"); n != 4 {
		t.Errorf("%d rows, want 4 (a's two image models and its live model, b's)\n%s", n, out.String())
	}
	if n := count(t, db, "orchestrator = '"+a.Address+"' AND pipeline = 'Live video to video' AND model = 'live' AND error_code = 'live_start_refused'"); n != 1 {
		t.Errorf("%d live rows for a, want 1 (refused start: the rig serves no live)\n%s", n, out.String())
	}
	out.Reset()
	if err := Run(context.Background(), append(common, "-models", "text-to-image:pinned"), &out, &errOut); err != nil {
		t.Fatalf("run with -models: %v\n%s", err, errOut.String())
	}
	if n := count(t, db, "model = 'pinned' AND outcome = 'success'"); n != 2 {
		t.Errorf("%d successes for the -models model, want 2\n%s", n, out.String())
	}
}

// A static list without -models probes what each entry advertises in
// GetOrchestrator (an operator need not know its models), while an entry
// that names its own models gets exactly those.
func TestStaticListAsksForModels(t *testing.T) {
	db := chtest.NewDB(t)
	a := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/a", "text-to-image:model/b", "live-video-to-video:live"}})
	b := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/c"}})
	list := a.Address + "=" + a.URL + "," + b.Address + "=" + b.URL + " text-to-image:own"
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"-region", "FRA", "-once", "-listen", "", "-spool-dir", t.TempDir(),
		"-orchestrators", list, "-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name}, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	for _, w := range []string{
		"orchestrator = '" + a.Address + "' AND model IN ('model/a', 'model/b') AND outcome = 'success'",
		"orchestrator = '" + b.Address + "' AND model = 'own' AND outcome = 'success'",
	} {
		if n := count(t, db, w); n == 0 {
			t.Errorf("no row where %s\n%s", w, out.String())
		}
	}
	if n := count(t, db, "1"); n != 4 {
		t.Errorf("%d rows, want 4 (a's two image models and its live model, b's own)\n%s", n, out.String())
	}
	if n := count(t, db, "orchestrator = '"+a.Address+"' AND pipeline = 'Live video to video' AND model = 'live'"); n != 1 {
		t.Errorf("%d live rows for a, want 1\n%s", n, out.String())
	}
}

// roundsStored reads what each stored round probed: round id → sorted
// "orchestrator model" items, and the round ids in order.
func roundsStored(t *testing.T, db *chtest.DB) (map[string][]string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := db.Conn.Query(ctx, "SELECT round_id, orchestrator, model FROM "+db.Name+".probe_results ORDER BY round_id, orchestrator, model")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	var order []string
	for rows.Next() {
		var round, orch, model string
		if err := rows.Scan(&round, &orch, &model); err != nil {
			t.Fatal(err)
		}
		if _, ok := out[round]; !ok {
			order = append(order, round)
		}
		out[round] = append(out[round], orch+" "+model)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, order
}

// A scheduled tester with webhook discovery discovers again at the start of
// every round: an orchestrator that registers is probed from the next
// round, one that leaves is no longer probed, and a model an orchestrator
// starts advertising is probed too. A round whose discovery fails probes
// the previous round's orchestrators rather than none, and stores nothing
// against anyone for the outage.
func TestScheduledWebhookRediscoversEachRound(t *testing.T) {
	db := chtest.NewDB(t)
	a := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/a"}})
	b := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/b"}})
	c := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/c"}})
	var calls atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		switch n := calls.Add(1); {
		case n == 1: // at start: round 1's plan
			fmt.Fprintf(w, `[{"address":%q},{"address":%q}]`, a.URL, b.URL)
		case n == 2: // round 2: the webhook is down
			http.Error(w, "upstream unavailable", http.StatusBadGateway)
		default: // round 3 on: b left, c registered, a added a model
			a.SetOffers("text-to-image:model/a", "text-to-image:model/a2")
			fmt.Fprintf(w, `[{"address":%q},{"address":%q}]`, a.URL, c.URL)
		}
	}))
	defer hook.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{
			"-region", "FRA", "-interval", "1s", "-round-deadline", "10s", "-listen", "", "-spool-dir", t.TempDir(),
			"-discovery", "webhook", "-webhook-url", hook.URL, "-flush-interval", "100ms",
			"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
		}, &bytes.Buffer{}, &errOut)
	}()
	var rounds map[string][]string
	var order []string
	for deadline := time.Now().Add(30 * time.Second); len(order) < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("%d rounds stored: %v\n%s", len(order), rounds, errOut.String())
		}
		time.Sleep(200 * time.Millisecond)
		rounds, order = roundsStored(t, db)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	rounds, order = roundsStored(t, db)
	first := []string{a.Address + " model/a", b.Address + " model/b"}
	later := []string{a.Address + " model/a", a.Address + " model/a2", c.Address + " model/c"}
	for _, s := range [][]string{first, later} {
		sort.Strings(s)
	}
	// Round k ran on the plan of the k-th webhook call (the first at
	// start); the last round may have been cut by the stop.
	for k, id := range order[:len(order)-1] {
		want := later
		if k < 2 {
			want = first
		}
		if got := rounds[id]; !slices.Equal(got, want) {
			t.Errorf("round %d (%s) probed %v, want %v", k+1, id, got, want)
		}
	}
	if !strings.Contains(errOut.String(), "discovery failed: this round probes the last discovered orchestrators") {
		t.Errorf("the failed discovery is not logged\n%s", errOut.String())
	}
	if n := count(t, db, "outcome != 'success'"); n != 0 {
		t.Errorf("%d rows that are not successes: the discovery outage was stored against someone", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// By default the tester reuses an orchestrator's session across rounds as a
// go-livepeer gateway does (one GetOrchestrator, then the cached auth token
// until its last 10%), so the rounds after the first time the job alone;
// and every round, run or skipped, leaves a row in the rounds table.
func TestScheduledRoundsReuseSessionAndAreRecorded(t *testing.T) {
	db := chtest.NewDB(t)
	o := orchtest.New(t, orchtest.Behaviour{})
	ctx, cancel := context.WithCancel(context.Background())
	var errOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{
			"-region", "FRA", "-interval", "1s", "-listen", "", "-spool-dir", t.TempDir(),
			"-orchestrators", o.Target(), "-models", "text-to-image:m",
			"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
		}, &bytes.Buffer{}, &errOut)
	}()
	for deadline := time.Now().Add(20 * time.Second); o.Calls.Load() < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("3 rounds did not run in 20 s\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if n := o.Discoveries.Load(); n != 1 {
		t.Errorf("%d GetOrchestrator calls for %d jobs, want 1 (a reused session)", n, o.Calls.Load())
	}
	if n := count(t, db, "outcome = 'success' AND discovery_us = 0"); n < 2 {
		t.Errorf("%d successful rows without a discovery phase, want the rounds after the first", n)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	var rounds uint64
	if err := db.Conn.QueryRow(cctx, "SELECT count() FROM "+db.Name+".rounds WHERE region = 'FRA' AND skipped = 0 AND result_rows = planned").Scan(&rounds); err != nil {
		t.Fatal(err)
	}
	if rounds < 3 {
		t.Errorf("%d complete rounds recorded, want at least 3\n%s", rounds, errOut.String())
	}
}
