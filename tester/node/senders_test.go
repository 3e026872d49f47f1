package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

// keyDir writes each key to its own file in a fresh directory, plus a
// dot-file that is not a key (skipped).
func keyDir(t *testing.T, keys ...*ecdsa.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	for i, k := range keys {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("sender-%d.key", i)), []byte(hex.EncodeToString(crypto.FromECDSA(k))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".notes"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// `tester -network onchain -tester-keys DIR` pays each probe with one of
// DIR's keys that has a TicketBroker deposit, and stores every row under the
// -tester-key identity, which pays nothing. Three runs of one round against
// six on-chain reference orchestrators whose tickets always win (one 1e15
// wei ticket per probe, redeemed from the payer's deposit): 18 successes
// under the identity's tester_id; the deposits of the funded keys paid for
// exactly the 18 tickets, from at least two of them; the unfunded pool key
// and the unfunded identity key never paid (a probe paid by either would
// have been refused by its orchestrator, or excused as sender_funds).
// On main before the key pool, -tester-keys is an unknown flag.
func TestTesterKeysPayFromThePool(t *testing.T) {
	db := chtest.NewDB(t)
	identity, _ := crypto.GenerateKey()
	var pool, orchs []*ecdsa.PrivateKey
	for range 4 {
		k, _ := crypto.GenerateKey()
		pool = append(pool, k)
	}
	for range 6 {
		k, _ := crypto.GenerateKey()
		orchs = append(orchs, k)
	}
	c := chaintest.New(t, append(append([]*ecdsa.PrivateKey{identity}, pool...), orchs...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deposit := big.NewInt(1e17)
	for _, k := range pool[:3] { // pool[3] stays unfunded
		if err := c.L.FundDepositAndReserve(ctx, k, deposit, deposit); err != nil {
			t.Fatal(err)
		}
	}
	face := big.NewInt(1e15)
	var refs []*orchtest.Reference
	for _, k := range orchs {
		pc := payment.Config{FaceValue: face, TicketEV: new(big.Int).Sub(face, big.NewInt(1)), ParamsValidBlocks: 100000}
		r := orchtest.NewReference(t, orchtest.ReferenceConfig{Key: k, Chain: payment.ContractChain{L: c.L, Key: k}, Payment: pc})
		c.Register(t, k, r.URI)
		refs = append(refs, r)
	}
	a := c.L.Addresses()
	dir := keyDir(t, pool...)
	const runs = 3
	for i := range runs {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), []string{
			"-region", "FRA", "-once", "-listen", "", "-spool-dir", t.TempDir(),
			"-network", "onchain", "-tester-key", writeKey(t, identity), "-tester-keys", dir,
			"-discovery", "chain", "-eth.url", c.URL,
			"-eth.bonding-manager", a.BondingManager.Hex(), "-eth.service-registry", a.ServiceRegistry.Hex(),
			"-eth.ticket-broker", a.TicketBroker.Hex(), "-maxTicketEV", "1e15", "-maxTotalEV", "1e16",
			"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
		}, &out, &errOut)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, errOut.String())
		}
		if !strings.Contains(out.String(), "6 probes, 6 success") {
			t.Fatalf("run %d:\n%s\n%s", i, out.String(), errOut.String())
		}
	}
	for _, r := range refs {
		r.Receiver.WaitRedemptions()
	}
	id := strings.ToLower(crypto.PubkeyToAddress(identity.PublicKey).Hex())
	if n := count(t, db, fmt.Sprintf("tester_id = '%s' AND outcome = 'success'", id)); n != 6*runs {
		t.Errorf("%d successes stored under the identity's tester_id %s, want %d", n, id, 6*runs)
	}
	if n := count(t, db, fmt.Sprintf("tester_id != '%s'", id)); n != 0 {
		t.Errorf("%d rows under another tester_id: the id must not follow the sender", n)
	}
	var tickets, used int64
	for i, k := range pool {
		info, err := c.L.SenderInfo(ctx, crypto.PubkeyToAddress(k.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if info.Deposit.Sign() != 0 {
				t.Errorf("unfunded key has a deposit %s", info.Deposit)
			}
			continue
		}
		n := new(big.Int).Div(new(big.Int).Sub(deposit, info.Deposit), face).Int64()
		t.Logf("pool key %d paid %d tickets", i, n)
		tickets += n
		if n > 0 {
			used++
		}
	}
	if tickets != 6*runs {
		t.Errorf("the funded pool keys paid %d tickets, want one per probe (%d)", tickets, 6*runs)
	}
	if used < 2 {
		t.Errorf("%d of the 3 funded keys paid; 18 probes drawn uniformly use one key alone with probability 3·3^-18", used)
	}
}

// -tester-keys is refused with what to do when it cannot work.
func TestTesterKeysConfigErrors(t *testing.T) {
	orch := "0x1111111111111111111111111111111111111111=http://127.0.0.1:1"
	k1, _ := crypto.GenerateKey()
	k2, _ := crypto.GenerateKey()
	dup := keyDir(t, k1, k2, k1)
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "x.key"), []byte("zz"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := writeKey(t, k2)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"off chain", []string{"-network", "offchain", "-tester-key", id, "-tester-keys", keyDir(t, k1)}, "only -network onchain"},
		{"no identity", []string{"-network", "onchain", "-tester-keys", keyDir(t, k1)}, "-tester-keys needs -tester-key"},
		{"empty dir", []string{"-network", "onchain", "-tester-key", id, "-tester-keys", t.TempDir()}, "holds no key file"},
		{"missing dir", []string{"-network", "onchain", "-tester-key", id, "-tester-keys", "/nonexistent/keys"}, "read key directory"},
		{"duplicate key", []string{"-network", "onchain", "-tester-key", id, "-tester-keys", dup}, "hold the same key"},
		{"not a key", []string{"-network", "onchain", "-tester-key", id, "-tester-keys", bad}, "x.key: not a hex secp256k1 private key"},
	}
	t.Setenv(keyEnv, "")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-region", "FRA", "-once", "-orchestrators", orch, "-models", "text-to-image:m", "-no-store", "-listen", ""}, tc.args...)
			err := Run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// The sender hook counts each key's payments under its lower-case address,
// with the region, as /metrics shows them.
func TestProbesBySenderMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	paid := senderCounter(reg, "FRA")
	k, _ := crypto.GenerateKey()
	a := crypto.PubkeyToAddress(k.PublicKey)
	paid(a)
	paid(a)
	want := fmt.Sprintf(`
# HELP tester_probes_by_sender_total Probes whose Livepeer-Payment was signed by this tester key (the sender address, lower case).
# TYPE tester_probes_by_sender_total counter
tester_probes_by_sender_total{region="FRA",sender=%q} 2
`, strings.ToLower(a.Hex()))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tester_probes_by_sender_total"); err != nil {
		t.Error(err)
	}
}
