package node

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/discovery"
	"github.com/lpgauge/lpgauge/gateway/pm"
)

const model = "test/model"

var priced = `[{"pipeline":"text-to-image","model_id":"` + model + `","warm":true,"capacity":1,"price_per_unit":1000}]`

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func keyFile(t *testing.T, hexKey string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(hexKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs the command until the test ends and waits for GetOrchestrator.
func start(t *testing.T, g *gateway.Gateway, uri string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
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
		time.Sleep(50 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed, as go-livepeer

// job discovers, pays for and runs one text-to-image job, then fetches the
// image; it returns the job's status and body.
func job(t *testing.T, g *gateway.Gateway, uri string, edit func(http.Header)) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, _, err := g.Discover(ctx, uri, capability.TextToImage, model)
	if err != nil {
		t.Fatal(err)
	}
	h, err := g.JobHeaders(info, capability.TextToImage, model, 64*64)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(h)
	}
	resp, err := gateway.Submit(ctx, client, uri, "text-to-image", "application/json",
		[]byte(`{"model_id":"`+model+`","prompt":"a bear","width":64,"height":64}`), h)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, string(b)
	}
	var out struct {
		Images []struct{ URL string } `json:"images"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Images) == 0 {
		t.Fatalf("job response %q: %v", b, err)
	}
	img, err := client.Get(out.Images[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, img.Body)
	img.Body.Close()
	if img.StatusCode != http.StatusOK || n == 0 {
		t.Fatalf("result %s: %d, %d bytes", out.Images[0].URL, img.StatusCode, n)
	}
	return resp.StatusCode, string(b)
}

// `orchestrator -network onchain` against a chain reached over JSON-RPC:
// found through the pool on TLS, it refuses unpaid jobs, runs paid ones,
// and redeems winning tickets, so its balance grows and the gateway's
// deposit shrinks.
func TestOnChain(t *testing.T) {
	t.Setenv(keyEnv, "")
	oKey, _ := crypto.GenerateKey()
	gwKey, _ := crypto.GenerateKey()
	c := chaintest.New(t, oKey, gwKey)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deposit := big.NewInt(1e17)
	if err := c.L.FundDepositAndReserve(ctx, gwKey, deposit, big.NewInt(1e17)); err != nil {
		t.Fatal(err)
	}
	a := c.L.Addresses()
	kf := keyFile(t, hex.EncodeToString(crypto.FromECDSA(oKey)))
	addr := freeAddr(t)
	base := []string{"-network", "onchain", "-ethUrl", c.URL, "-eth.key-file", kf,
		"-eth.ticket-broker", a.TicketBroker.Hex(), "-eth.rounds-manager", a.RoundsManager.Hex(),
		"-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", freeAddr(t), "-mean-latency", "10ms", "-jitter", "0",
		"-ticket.store", t.TempDir()}

	t.Run("contract address without code", func(t *testing.T) {
		args := append(append([]string{}, base...), "-aiModels", priced, "-eth.ticket-broker", a.BondingManager.Hex()[:2]+strings.Repeat("1", 40))
		err := Run(ctx, args)
		if err == nil || !strings.Contains(err.Error(), "no contract at this address") {
			t.Fatalf("got %v", err)
		}
	})

	// Win probability 1 − 1e-15: every ticket wins, so one job shows a
	// redemption; EV stays below the face value, which go-livepeer gateways
	// require.
	c.Register(t, oKey, "https://"+addr)
	g := &gateway.Gateway{Sender: pm.NewSender(pm.NewSigner(gwKey))}
	start(t, g, "https://"+addr, append(base, "-aiModels", priced, "-ticket.face-value", "1e15", "-ticketEV", "999999999999999", "-ticket.params-blocks", "100000")...)

	found, err := discovery.Chain{L: c.L}.Orchestrators(ctx)
	if err != nil || len(found) != 1 || found[0].ServiceURI != "https://"+addr {
		t.Fatalf("pool: %v %v", found, err)
	}
	before := c.Balance(t, oKey)

	// No Livepeer-Payment: as go-livepeer, an empty payment whose zero
	// sender fails the segment signature.
	if status, body := job(t, g, found[0].ServiceURI, func(h http.Header) { h.Del(gateway.PaymentHeader) }); status != http.StatusForbidden {
		t.Fatalf("unpaid job: %d %s", status, body)
	}
	if status, body := job(t, g, found[0].ServiceURI, nil); status != http.StatusOK {
		t.Fatalf("paid job: %d %s", status, body)
	}
	for deadline := time.Now().Add(15 * time.Second); c.Balance(t, oKey).Cmp(before) <= 0; {
		if time.Now().After(deadline) {
			t.Fatalf("orchestrator balance did not grow from %v", before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	info, err := c.L.SenderInfo(ctx, crypto.PubkeyToAddress(gwKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if info.Deposit.Cmp(deposit) >= 0 {
		t.Errorf("gateway deposit not debited by the redemption: %v", info.Deposit)
	}
}

// Off chain (the default) the port speaks h2c: GetOrchestrator advertises
// the -eth.addr identity and price 0, and jobs need no Livepeer headers.
func TestOffChainH2C(t *testing.T) {
	addr := freeAddr(t)
	g := &gateway.Gateway{}
	op := freeAddr(t)
	start(t, g, "http://"+addr, "-aiModels", "text-to-image:"+model+":true", "-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", op,
		"-eth.addr", "0x00000000000000000000000000000000000000aa", "-mean-latency", "10ms", "-jitter", "0")
	info, _, err := g.Info(context.Background(), "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(info.GetAddress()); got != strings.Repeat("0", 38)+"aa" {
		t.Errorf("advertised address %s", got)
	}
	if offers := gateway.Offers(info); len(offers) != 1 || offers[0].Model != model || !offers[0].Warm {
		t.Errorf("offers %v", offers)
	}
	if info.GetTicketParams() != nil || info.GetPriceInfo().GetPricePerUnit() != 0 {
		t.Errorf("off chain advertises a price or tickets: %v", info)
	}
	if status, body := job(t, g, "http://"+addr, func(h http.Header) { h.Del(gateway.SegmentHeader) }); status != http.StatusOK {
		t.Fatalf("job without Livepeer headers: %d %s", status, body)
	}
	// /status and /metrics are the operator's, on -operator-addr only.
	for _, path := range []string{"/status", "/metrics"} {
		if code := httpGet(t, "http://"+addr+path); code != http.StatusNotFound {
			t.Errorf("public port %s: %d, want 404", path, code)
		}
		if code := httpGet(t, "http://"+op+path); code != http.StatusOK {
			t.Errorf("operator listener %s: %d, want 200", path, code)
		}
	}
	if code := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("public /healthz: %d", code)
	}
}

func httpGet(t *testing.T, url string) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Bad configuration is refused before anything starts, with the flag named.
func TestBadConfig(t *testing.T) {
	t.Setenv(keyEnv, "")
	kf := keyFile(t, strings.Repeat("ab", 32))
	good := "0x" + strings.Repeat("1", 40)
	onchain := func(extra ...string) []string {
		return append([]string{"-network", "onchain", "-aiModels", priced, "-ethUrl", "http://127.0.0.1:1", "-eth.key-file", kf,
			"-eth.ticket-broker", good, "-eth.rounds-manager", good, "-httpAddr", "127.0.0.1:0", "-operator-addr", ""}, extra...)
	}
	cases := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"unknown network", []string{"-network", "mainnet", "-aiModels", priced}, "", "want offchain or onchain"},
		{"no rpc url", onchain("-ethUrl", ""), "", "-ethUrl is required"},
		{"rpc url not a url", onchain("-ethUrl", "localhost:8545"), "", "want an http(s):// or ws(s)://"},
		{"no key", onchain("-eth.key-file", ""), "", "-eth.key-file or $" + keyEnv},
		{"key file missing", onchain("-eth.key-file", "/nonexistent"), "", "-eth.key-file"},
		{"key not hex", onchain("-eth.key-file", ""), "zz", "not a hex secp256k1 private key"},
		{"no ticket broker", onchain("-eth.ticket-broker", ""), "", "-eth.ticket-broker is required"},
		{"bad rounds manager", onchain("-eth.rounds-manager", "0x12"), "", "-eth.rounds-manager \"0x12\""},
		{"ev above face", onchain("-ticket.face-value", "100", "-ticketEV", "1000"), "", "above the face value"},
		{"face not a number", onchain("-ticket.face-value", "lots"), "", "-ticket.face-value \"lots\""},
		{"unreachable chain", onchain(), "", "-ethUrl http://127.0.0.1:1"},
		{"onchain without prices", onchain("-aiModels", "text-to-image:m:true"), "", "no aiModels entry has a price_per_unit"},
		{"fiat price", onchain("-aiModels", `[{"pipeline":"text-to-image","model_id":"m","price_per_unit":1,"currency":"USD"}]`), "", "needs a price feed"},
		{"bad ethAddr", []string{"-aiModels", priced, "-eth.addr", "me"}, "", "-eth.addr \"me\""},
		{"in-flight bound below body bound", []string{"-aiModels", priced, "-max-body-bytes", "1000", "-max-body-bytes-in-flight", "999"}, "", "-max-body-bytes-in-flight 999 is below -max-body-bytes 1000"},
		{"unknown pipeline body bound", []string{"-aiModels", priced, "-pipeline-body-bytes", "text-to-everything=1MiB"}, "", "unknown pipeline \"text-to-everything\""},
		{"body bound not a size", []string{"-aiModels", priced, "-pipeline-body-bytes", "llm=lots"}, "", "want a positive number of bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(keyEnv, tc.env)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := Run(ctx, tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Error("timed out instead of failing fast")
			}
		})
	}
}
