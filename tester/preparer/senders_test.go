package preparer

import (
	"context"
	"crypto/ecdsa"
	"math/big"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// A tester with several keys pays each probe with one funded key, drawn
// per probe, and never with a key that cannot pay. On the simulated chain
// with two reference orchestrators whose tickets always win (each probe
// pays one ticket of 1e15 wei, redeemed on chain, so a sender's deposit
// falls by 1e15 for every probe it paid): keys a and b hold 100 tickets'
// deposit, key c only 5 (it loses its deposit mid-run), key u has none.
// Over 36 probes every probe succeeds; the TicketBroker, debited only by
// the orchestrators' redemptions, shows a, b and c all paid and u never; the
// orchestrators' tickets came from three senders; c paid exactly its 5 and
// was never drawn again once its deposit was gone.
//
// On main before the key pool the tester had one key: one sender for every
// probe (the test does not compile there: Preparer has no Senders).
func TestSeveralSenderKeysShareTheProbes(t *testing.T) {
	keys := map[string]*ecdsa.PrivateKey{}
	for _, n := range []string{"a", "b", "c", "u"} {
		keys[n], _ = crypto.GenerateKey()
	}
	orch1, _ := crypto.GenerateKey()
	orch2, _ := crypto.GenerateKey()
	c := chaintest.New(t, orch1, orch2, keys["a"], keys["b"], keys["c"], keys["u"])
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	face := big.NewInt(1e15)
	deposits := map[string]*big.Int{"a": big.NewInt(1e17), "b": big.NewInt(1e17), "c": new(big.Int).Mul(face, big.NewInt(5))}
	for n, d := range deposits {
		if err := c.L.FundDepositAndReserve(ctx, keys[n], d, big.NewInt(1e17)); err != nil {
			t.Fatal(err)
		}
	}
	o := newOnChainFrom(t, c)
	// Win probability 1 − 1e-15: EV just below the face value, which a
	// go-livepeer sender accepts (pm/sender.go:203-205).
	pc := payment.Config{FaceValue: face, TicketEV: new(big.Int).Sub(face, big.NewInt(1)), ParamsValidBlocks: 100000}
	refs := []*orchtest.Reference{
		orchtest.NewReference(t, orchtest.ReferenceConfig{Key: orch1, Chain: payment.ContractChain{L: c.L, Key: orch1}, Payment: pc}),
		orchtest.NewReference(t, orchtest.ReferenceConfig{Key: orch2, Chain: payment.ContractChain{L: c.L, Key: orch2}, Payment: pc}),
	}

	names := map[common.Address]string{}
	var senders []*gateway.Gateway
	for _, n := range []string{"a", "b", "c", "u"} {
		gw := o.gateway(keys[n])
		gw.MaxTicketEV, gw.MaxTotalEV = big.NewRat(1e15, 1), big.NewRat(1e16, 1)
		// The deposit is read before every probe here (30 s in the binary),
		// so the test sees c stop at its first probe after the drain.
		gw.SenderCacheTTL = time.Millisecond
		senders = append(senders, gw)
		names[crypto.PubkeyToAddress(keys[n].PublicKey)] = n
	}
	var mu sync.Mutex
	var paidBy []string
	// A fixed seed, so the draws (and the test) are the same every run; the
	// probes run one at a time, so one rand.Rand is safe.
	rnd := rand.New(rand.NewPCG(17, 3))
	prep := Preparer{Senders: senders, Paid: func(a common.Address) {
		mu.Lock()
		paidBy = append(paidBy, names[a])
		mu.Unlock()
	}, perm: rnd.Perm}
	t2i, _ := probe.Lookup("text-to-image")
	p := probe.New(probe.Config{Preparer: prep, Timeouts: probe.Timeouts{Total: 30 * time.Second, Server: 20 * time.Second}})

	const probes = 36
	cDrainedAt := -1 // index in paidBy of c's last payment
	for i := range probes {
		r := refs[i%len(refs)]
		res := p.Run(ctx, probe.Job{Orchestrator: r.Address, ServiceURI: r.URI, Pipeline: t2i, Model: orchtest.DefaultModel, Seed: int64(i + 1)})
		if res.Outcome != results.Success {
			t.Fatalf("probe %d: %s %s/%s: %s", i, res.Outcome, res.ErrorClass, res.ErrorCode, res.ErrorMessage)
		}
		// The ticket is redeemed before the next probe, so the chain shows
		// every payment so far.
		r.Receiver.WaitRedemptions()
		if cDrainedAt < 0 {
			info, err := c.L.SenderInfo(ctx, crypto.PubkeyToAddress(keys["c"].PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			if info.Deposit.Sign() == 0 {
				cDrainedAt = len(paidBy) - 1
			}
		}
	}

	// What the tester says it paid with.
	count := map[string]int{}
	for _, n := range paidBy {
		count[n]++
	}
	if len(paidBy) != probes {
		t.Fatalf("%d payments for %d probes: %v", len(paidBy), probes, paidBy)
	}
	for _, n := range []string{"a", "b", "c"} {
		if count[n] == 0 {
			t.Errorf("key %s never paid a probe: %v", n, count)
		}
	}
	if count["u"] != 0 {
		t.Errorf("the unfunded key paid %d probes", count["u"])
	}
	if cDrainedAt < 0 {
		t.Fatalf("key c still has a deposit after %d probes (%v): it was not drawn often enough to drain it", probes, count)
	}
	for i := cDrainedAt + 1; i < len(paidBy); i++ {
		if paidBy[i] == "c" {
			t.Errorf("probe %d paid by c after its deposit ran out at probe %d: %v", i, cDrainedAt, paidBy)
		}
	}

	// What the chain says: the orchestrators redeemed one winning ticket per
	// probe, from each sender in the same count, and none from u.
	redeemedFrom := 0
	for n, key := range keys {
		info, err := c.L.SenderInfo(ctx, crypto.PubkeyToAddress(key.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		before := deposits[n]
		if before == nil {
			before = new(big.Int)
		}
		spent := new(big.Int).Sub(before, info.Deposit)
		tickets := new(big.Int).Div(spent, face).Int64()
		if tickets != int64(count[n]) {
			t.Errorf("key %s: the TicketBroker paid %d tickets (%s wei) from its deposit, the tester says it paid %d probes", n, tickets, spent, count[n])
		}
		if tickets > 0 {
			redeemedFrom++
		}
	}
	if redeemedFrom != 3 {
		t.Errorf("the orchestrators redeemed tickets from %d senders, want 3 (a, b, c)", redeemedFrom)
	}
	if count["c"] != 5 {
		t.Errorf("key c paid %d probes, want exactly the 5 its deposit covers", count["c"])
	}
	t.Logf("payments per key over %d probes: %v; c drained at payment %d", probes, count, cDrainedAt)
}

// With no key able to pay, the probe is excused as the tester's own
// (tester/sender_funds), nothing paid, as with one key.
func TestNoFundedSenderKeyIsExcused(t *testing.T) {
	o := newOnChain(t)
	ok := o.reference(t, orchtest.ReferenceConfig{Payment: payment.Config{ParamsValidBlocks: 100000}})
	poor2, _ := crypto.GenerateKey()
	var paid int
	prep := Preparer{Senders: []*gateway.Gateway{o.gateway(o.poor), o.gateway(poor2)}, Paid: func(common.Address) { paid++ }}
	t2i, _ := probe.Lookup("text-to-image")
	p := probe.New(probe.Config{Preparer: prep, Timeouts: probe.Timeouts{Total: 30 * time.Second, Server: 20 * time.Second}})
	res := p.Run(context.Background(), probe.Job{Orchestrator: ok.Address, ServiceURI: ok.URI, Pipeline: t2i, Model: orchtest.DefaultModel, Seed: 1})
	if res.Outcome != results.Excused || res.ErrorClass != "tester" || res.ErrorCode != "sender_funds" {
		t.Fatalf("got %s %s/%s (%s), want excused tester/sender_funds", res.Outcome, res.ErrorClass, res.ErrorCode, res.ErrorMessage)
	}
	if paid != 0 {
		t.Errorf("paid %d times with unfunded keys", paid)
	}
}

// newOnChainFrom is newOnChain's view of a chain the test made itself.
func newOnChainFrom(t *testing.T, c *chaintest.Chain) *onChain {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := ethclient.DialContext(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	broker, err := contracts.New(client, big.NewInt(chaintest.ChainID), c.L.Addresses())
	if err != nil {
		t.Fatal(err)
	}
	return &onChain{c: c, eth: gateway.EthChain{Client: client, Broker: broker}}
}
