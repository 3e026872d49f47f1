package payment

import (
	"context"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// idleChain is the Chain of an on-chain receiver whose Check is fuzzed:
// Check reads no chain state (tickets are verified in Pay), so any call is
// a finding.
type idleChain struct{}

var errChainCalled = errors.New("Check must not touch the chain")

func (idleChain) BlockNumber(context.Context) (uint64, error) { return 0, errChainCalled }
func (idleChain) CurrentRound(context.Context) (int64, common.Hash, error) {
	return 0, common.Hash{}, errChainCalled
}
func (idleChain) Sender(context.Context, common.Address) (SenderInfo, error) {
	return SenderInfo{}, errChainCalled
}
func (idleChain) Redeem(context.Context, *pm.Ticket, []byte, *big.Int) error { return errChainCalled }

// FuzzGateCheck sends fuzzed Livepeer-Payment and Livepeer-Segment headers
// through the Gate of an off-chain and an on-chain receiver. Check never
// panics and refuses with 402 (payment) or 403 (credentials) only; a forged
// header is never admitted.
func FuzzGateCheck(f *testing.F) {
	key, _ := crypto.ToECDSA(common.FromHex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))
	signer := pm.NewSigner(key)
	off, err := NewReceiver(Config{Secret: []byte("fuzz-secret")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(off.Close)
	on, err := NewReceiver(Config{Secret: []byte("fuzz-secret"), Chain: idleChain{}, Signer: pm.NewSigner(key)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(on.Close)
	t2i, _ := capability.ByID(capability.TextToImage)
	model := "ByteDance/SDXL-Lightning"

	// Real headers: a valid segment for each receiver and a signed payment.
	for _, r := range []*Receiver{off, on} {
		sd, err := gateway.SegData(signer, t2i.ID, model, r.AuthToken())
		if err != nil {
			f.Fatal(err)
		}
		seg, _ := pm.EncodeHeader(sd)
		tp := &lpnet.TicketParams{
			Recipient: r.Address().Bytes(), FaceValue: big.NewInt(1e12).Bytes(), WinProb: big.NewInt(1).Bytes(),
			RecipientRandHash: crypto.Keccak256([]byte("x")), ExpirationBlock: big.NewInt(100).Bytes(),
		}
		p, err := pm.NewSender(signer).Payment(tp, &lpnet.PriceInfo{PricePerUnit: 1, PixelsPerUnit: 1}, 1)
		if err != nil {
			f.Fatal(err)
		}
		pay, _ := pm.EncodeHeader(p)
		f.Add(pay, seg)
		f.Add("", seg)
		f.Add(pay, "")
		f.Add(pay, seg[:len(seg)/2])
		f.Add("%%%", seg)
		f.Add(pay, strings.Repeat("A", 100<<10))
	}
	price := func(capability.Pipeline, string) *lpnet.PriceInfo {
		return &lpnet.PriceInfo{PricePerUnit: 1, PixelsPerUnit: 1}
	}
	gates := []orchestrator.Gate{off.Gate(price), on.Gate(price)}
	f.Fuzz(func(t *testing.T, payment, segment string) {
		for i, g := range gates {
			req := httptest.NewRequest(http.MethodPost, "/text-to-image", nil)
			if payment != "" {
				req.Header[gateway.PaymentHeader] = []string{payment}
			}
			if segment != "" {
				req.Header[gateway.SegmentHeader] = []string{segment}
			}
			adm, err := g.Check(req, orchestrator.Job{Pipeline: t2i, Model: model, Units: 512 * 512})
			if err != nil {
				var ref *orchestrator.Refusal
				if !errors.As(err, &ref) || (ref.Status != http.StatusPaymentRequired && ref.Status != http.StatusForbidden) || ref.Message == "" {
					t.Fatalf("gate %d: error %T %v, want a 402/403 refusal", i, err, err)
				}
				if errors.Is(err, errChainCalled) || strings.Contains(ref.Message, errChainCalled.Error()) {
					t.Fatalf("gate %d: Check called the chain", i)
				}
				continue
			}
			// Admitted: the segment must be one this receiver issued a token for.
			var sd lpnet.SegData
			if err := pm.DecodeHeader(segment, &sd); err != nil {
				t.Fatalf("gate %d admitted an undecodable segment: %v", i, err)
			}
			r := []*Receiver{off, on}[i]
			if err := r.VerifyAuthToken(sd.GetAuthToken()); err != nil {
				t.Fatalf("gate %d admitted a bad auth token: %v", i, err)
			}
			if adm == nil {
				t.Fatalf("gate %d: nil admission without error", i)
			}
		}
	})
}
