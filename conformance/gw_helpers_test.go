package conformance

// Helpers of the gateway-side tests (gw_*_test.go). Every name starts with
// gw so the orchestrator-side tests of this package can have their own.

import (
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Fixed inputs of the vectors (testdata/go-livepeer/README.md §0).
const (
	gwKeyHex      = "0x1111111111111111111111111111111111111111111111111111111111111111"
	gwAddressHex  = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
	gwT2IModel    = "ByteDance/SDXL-Lightning"
	gwLLMModel    = "meta-llama/Meta-Llama-3.1-8B-Instruct"
	gwLastL1Block = 21000000
	gwJobPixels   = 1024 * 1024 // §4: text-to-image 1024×1024, one image
)

var (
	gwDeposit = new(big.Int).Exp(big.NewInt(10), big.NewInt(17), nil) // §0: deposit and reserve 1e17
)

func gwKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.ToECDSA(common.FromHex(gwKeyHex))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// gwSigner is the vectors' gateway / ticket sender.
func gwSigner(t testing.TB) *pm.Signer {
	t.Helper()
	s := pm.NewSigner(gwKey(t))
	if s.Address() != common.HexToAddress(gwAddressHex) {
		t.Fatalf("gateway key gives %s, want %s", s.Address().Hex(), gwAddressHex)
	}
	return s
}

// gwFile reads a vector file.
func gwFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "go-livepeer", name))
	if err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	return b
}

// gwBytes is a vector's protobuf bytes from its .hex file.
func gwBytes(t testing.TB, stem string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimSpace(string(gwFile(t, stem+".hex"))))
	if err != nil {
		t.Fatalf("vector %s.hex: %v", stem, err)
	}
	return b
}

// gwB64 is a vector's header form (.b64), checked against its .hex.
func gwB64(t testing.TB, stem string) string {
	t.Helper()
	s := strings.TrimSpace(string(gwFile(t, stem+".b64")))
	if s != base64.StdEncoding.EncodeToString(gwBytes(t, stem)) {
		t.Fatalf("vector %s: .b64 and .hex differ", stem)
	}
	return s
}

// gwDecode unmarshals a vector into m.
func gwDecode[M proto.Message](t testing.TB, stem string, m M) M {
	t.Helper()
	if err := proto.Unmarshal(gwBytes(t, stem), m); err != nil {
		t.Fatalf("vector %s: %v", stem, err)
	}
	return m
}

// gwJSON reads a .json vector file into v.
func gwJSON(t testing.TB, name string, v any) {
	t.Helper()
	if err := json.Unmarshal(gwFile(t, name), v); err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
}

// gwDeterministic marshals as the vectors were written (map entries sorted
// by key); messages without maps marshal the same either way.
func gwDeterministic(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gwInfo is an OrchestratorInfo vector whose auth token is moved into the
// future: the vectors' token expires 2027-01-01, and the gateway refuses to
// pay against an expired token. Nothing the gateway signs or pays depends on
// the expiration except SegData, which gw_segdata_test checks with the
// vector's own token.
func gwInfo(t testing.TB, stem string) *lpnet.OrchestratorInfo {
	t.Helper()
	info := gwDecode(t, stem, &lpnet.OrchestratorInfo{})
	if info.GetAuthToken() != nil {
		info.AuthToken.Expiration = 4102444800 // 2100-01-01
	}
	return info
}

// gwChain is the vectors' chain state (§0 "chain state (stand-ins)"): the
// last seen L1 block and the sender's TicketBroker deposit, reserve and
// withdraw round. The vectors were made with the same stand-ins in place of
// go-livepeer's chain readers; fields can be changed under mu.
type gwChain struct {
	mu     sync.Mutex
	block  *big.Int
	sender contracts.SenderInfo
}

func newGWChain() *gwChain {
	return &gwChain{block: big.NewInt(gwLastL1Block), sender: contracts.SenderInfo{
		Deposit: new(big.Int).Set(gwDeposit), ReserveRemaining: new(big.Int).Set(gwDeposit), WithdrawRound: new(big.Int),
	}}
}

func (c *gwChain) LastBlock(context.Context) (*big.Int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return new(big.Int).Set(c.block), nil
}

func (c *gwChain) SenderInfo(context.Context, common.Address) (contracts.SenderInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sender, nil
}

func (c *gwChain) setBlock(b int64) {
	c.mu.Lock()
	c.block = big.NewInt(b)
	c.mu.Unlock()
}

// gwGateway is a paying gateway with go-livepeer's default sender limits
// (-maxTicketEV 3e12, -maxTotalEV 2e13, -depositMultiplier 1) over chain.
func gwGateway(t testing.TB, chain gateway.Chain) *gateway.Gateway {
	t.Helper()
	return &gateway.Gateway{
		Sender:            pm.NewSender(gwSigner(t)),
		MaxTicketEV:       gateway.DefaultMaxTicketEV,
		MaxTotalEV:        gateway.DefaultMaxTotalEV,
		DepositMultiplier: gateway.DefaultDepositMultiplier,
		Chain:             chain,
		// Every read sees the stand-in as the test just set it.
		BlockCacheTTL:  1,
		SenderCacheTTL: 1,
	}
}

// gwSame fails unless got equals go-livepeer's want as a decoded message
// (map order aside), printing both as protojson.
func gwSame(t testing.TB, what string, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		t.Fatalf("%s differs from go-livepeer's\n got %s\nwant %s", what, protojson.Format(got), protojson.Format(want))
	}
}

// gwPayment decodes a Livepeer-Payment header value.
func gwPayment(t testing.TB, h string) *lpnet.Payment {
	t.Helper()
	var p lpnet.Payment
	if err := pm.DecodeHeader(h, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// gwRat parses the leading integer of a vector's "N (~x)" or "a/b (~x)".
func gwRat(t testing.TB, s string) *big.Rat {
	t.Helper()
	f, _, _ := strings.Cut(s, " ")
	r, ok := new(big.Rat).SetString(f)
	if !ok {
		t.Fatalf("not a number: %q", s)
	}
	return r
}
