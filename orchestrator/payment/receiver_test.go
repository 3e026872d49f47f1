package payment

import (
	"context"
	"errors"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/gateway/pm"

	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

func TestAuthToken(t *testing.T) {
	r, err := NewReceiver(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tok := r.AuthToken()
	if err := r.VerifyAuthToken(tok); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	forged := proto.Clone(tok).(*lpnet.AuthToken)
	forged.SessionId = "someone-else"
	if err := r.VerifyAuthToken(forged); !errors.Is(err, ErrTokenForged) {
		t.Errorf("forged: %v", err)
	}
	if err := r.VerifyAuthToken(nil); !errors.Is(err, ErrNoToken) {
		t.Errorf("missing: %v", err)
	}
	other, _ := NewReceiver(Config{})
	defer other.Close()
	if err := other.VerifyAuthToken(tok); !errors.Is(err, ErrTokenForged) {
		t.Errorf("another orchestrator's token: %v", err)
	}
	expired, _ := NewReceiver(Config{TokenTTL: -time.Minute})
	defer expired.Close()
	if err := expired.VerifyAuthToken(expired.AuthToken()); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired: %v", err)
	}
}

// movingChain is a chain whose latest block the test sets.
type movingChain struct{ block atomic.Uint64 }

func (c *movingChain) BlockNumber(context.Context) (uint64, error) { return c.block.Load(), nil }
func (c *movingChain) CurrentRound(context.Context) (int64, common.Hash, error) {
	return 7, common.HexToHash("0x01"), nil
}
func (c *movingChain) Sender(context.Context, common.Address) (SenderInfo, error) {
	return SenderInfo{Deposit: big.NewInt(1e18), Reserve: big.NewInt(1e18), WithdrawRound: new(big.Int)}, nil
}
func (c *movingChain) Redeem(context.Context, *pm.Ticket, []byte, *big.Int) error { return nil }

// TestParamsExpiry: tickets on params whose expiration block has been
// reached fail "TicketParams expired" (pm/recipient.go:177-181), and the
// nonce sets of expired params are dropped (pm/recipient.go:400-418), so the
// receiver's memory does not grow with every params set ever issued.
func TestParamsExpiry(t *testing.T) {
	okey, _ := crypto.GenerateKey()
	gkey, _ := crypto.GenerateKey()
	gw := pm.NewSigner(gkey)
	c := &movingChain{}
	c.block.Store(100)
	r, err := NewReceiver(Config{Signer: pm.NewSigner(okey), Chain: c, ParamsValidBlocks: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	price := &lpnet.PriceInfo{PricePerUnit: 1, PixelsPerUnit: 1}
	pay := func() error {
		tp, err := r.TicketParams(context.Background(), gw.Address(), price)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pm.NewSender(gw).Payment(tp, price, 1)
		if err != nil {
			t.Fatal(err)
		}
		p.TicketParams.ExpirationParams = nil // as go-livepeer's gateway sends it
		return r.ProcessPayment(context.Background(), p, "27_m")
	}
	if err := pay(); err != nil {
		t.Fatalf("fresh params: %v", err)
	}
	if n := r.NonceSets(); n != 1 {
		t.Fatalf("%d nonce sets, want 1", n)
	}
	tp, _ := r.TicketParams(context.Background(), gw.Address(), price)
	p, _ := pm.NewSender(gw).Payment(tp, price, 1)
	c.block.Store(140) // = expiration block of params issued at 100
	if err := r.ProcessPayment(context.Background(), p, "27_m"); !errors.Is(err, ErrParamsExpired) {
		t.Errorf("expired params: %v, want %v", err, ErrParamsExpired)
	}
	c.block.Store(141)
	if _, err := r.TicketParams(context.Background(), gw.Address(), price); err != nil {
		t.Fatal(err)
	}
	if n := r.NonceSets(); n != 0 {
		t.Errorf("%d nonce sets kept after their params expired", n)
	}
}
