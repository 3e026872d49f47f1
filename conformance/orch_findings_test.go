package conformance

// The two orchestrator findings of issue #12, written against APIs that
// existed before the fix so that they can be run against the old code
// (they fail there: "capabilities not supported" and "invalid
// recipientRand").

import (
	"context"
	"encoding/hex"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

func findingSigner(t *testing.T, h string) *pm.Signer {
	k, err := crypto.HexToECDSA(h)
	if err != nil {
		t.Fatal(err)
	}
	return pm.NewSigner(k)
}

type findingChain struct{}

func (findingChain) BlockNumber(context.Context) (uint64, error) { return 21000000, nil }
func (findingChain) CurrentRound(context.Context) (int64, common.Hash, error) {
	return 3600, common.HexToHash("9f69b7ce0f22514226e1e282d07c86cbac754c9526080a585646745ada44c933"), nil
}
func (findingChain) Sender(context.Context, common.Address) (payment.SenderInfo, error) {
	return payment.SenderInfo{Deposit: big.NewInt(1e17), Reserve: big.NewInt(1e17), WithdrawRound: new(big.Int)}, nil
}
func (findingChain) Redeem(context.Context, *pm.Ticket, []byte, *big.Int) error { return nil }

func findingServer(t *testing.T) *lprpc.Server {
	t.Helper()
	recv, err := payment.NewReceiver(payment.Config{Signer: findingSigner(t, vecOrchKey), Chain: findingChain{}, FaceValue: big.NewInt(1_200_000_000_000_000)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	t2i, _ := capability.ByID(capability.TextToImage)
	return &lprpc.Server{URI: "https://orchestrator.example:8935", Receiver: recv, Version: "0.9.1", States: func() []orchestrator.ModelState {
		return []orchestrator.ModelState{{Pipeline: t2i, Model: "ByteDance/SDXL-Lightning", Warm: true, Capacity: 1, RunnerVersion: "0.14.1", PricePerUnit: 4768371, PixelsPerUnit: 1}}
	}}
}

// TestOrchFindingAIGatewayRequestAnswered: a go-livepeer AI gateway's
// GetOrchestrator (01a: the 15 DefaultCapabilities bits + text-to-image)
// is answered, and go-livepeer's CompatibleWith accepts what we advertise.
// Before the fix the orchestrator refused it ("capabilities not
// supported") and advertised only the AI bit.
func TestOrchFindingAIGatewayRequestAnswered(t *testing.T) {
	b, err := os.ReadFile("testdata/go-livepeer/01a_orchestrator_request_text_to_image.hex")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(strings.TrimSpace(string(b)))
	var req lpnet.OrchestratorRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		t.Fatal(err)
	}
	info, err := findingServer(t).GetOrchestrator(context.Background(), &req)
	if err != nil {
		t.Fatalf("GetOrchestrator(01a): %v; go-livepeer answers it", err)
	}
	if !capability.CompatibleWith(req.GetCapabilities(), info.GetCapabilities()) {
		t.Fatalf("go-livepeer's gateway would drop us: CompatibleWith false for %v", capability.IDs(info.GetCapabilities().GetBitstring()))
	}
}

// TestOrchFindingPaymentFieldThree: a payment shaped as go-livepeer's
// gateway sends it — expiration params only in Payment field 3, none in
// TicketParams field 7 (README §4) — is accepted. Before the fix every such
// ticket failed "invalid recipientRand".
func TestOrchFindingPaymentFieldThree(t *testing.T) {
	s := findingServer(t)
	gw := findingSigner(t, vecGatewayKey)
	t2i, _ := capability.ByID(capability.TextToImage)
	model := "ByteDance/SDXL-Lightning"
	price := s.Price(t2i, model)
	tp, err := s.Receiver.TicketParams(context.Background(), gw.Address(), price)
	if err != nil || tp == nil {
		t.Fatalf("ticket params: %v %v", tp, err)
	}
	ep := tp.GetExpirationParams()
	sent := proto.Clone(tp).(*lpnet.TicketParams)
	sent.ExpirationParams = nil // genPayment does not set field 7
	p := &lpnet.Payment{TicketParams: sent, Sender: gw.Address().Bytes(), ExpirationParams: ep,
		ExpectedPrice: &lpnet.PriceInfo{PricePerUnit: price.GetPricePerUnit(), PixelsPerUnit: price.GetPixelsPerUnit()}}
	tk := &pm.Ticket{Recipient: common.BytesToAddress(tp.GetRecipient()), Sender: gw.Address(),
		FaceValue: new(big.Int).SetBytes(tp.GetFaceValue()), WinProb: new(big.Int).SetBytes(tp.GetWinProb()), SenderNonce: 1,
		RecipientRandHash: common.BytesToHash(tp.GetRecipientRandHash()), CreationRound: ep.GetCreationRound(),
		CreationRoundBlockHash: common.BytesToHash(ep.GetCreationRoundBlockHash())}
	sig, err := gw.Sign(tk.Hash().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	p.TicketSenderParams = []*lpnet.TicketSenderParams{{SenderNonce: 1, Sig: sig}}
	payHdr, _ := pm.EncodeHeader(p)
	sd, err := gateway.SegData(gw, capability.TextToImage, model, s.Receiver.AuthToken())
	if err != nil {
		t.Fatal(err)
	}
	segHdr, _ := pm.EncodeHeader(sd)
	req := httptest.NewRequest(http.MethodPost, "/text-to-image", nil)
	req.Header.Set(gateway.PaymentHeader, payHdr)
	req.Header.Set(gateway.SegmentHeader, segHdr)
	adm, err := s.Receiver.Gate(s.Price).Check(req, orchestrator.Job{Pipeline: t2i, Model: model, Units: 1})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if err := adm.Pay(context.Background()); err != nil {
		t.Fatalf("go-livepeer-shaped payment refused: %v", err)
	}
}
