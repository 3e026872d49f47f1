package payment

import (
	"context"
	"fmt"
	"math/big"
	"net/http"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// InfoFunc builds the OrchestratorInfo of a /payment reply for sender and
// the SegData's capabilities, as go-livepeer's orchestratorInfoWithCaps
// (server/segment_rpc.go:248-257): fresh ticket params, the price for the
// capabilities, live capacity.
type InfoFunc func(ctx context.Context, sender common.Address, caps *lpnet.Capabilities) (*lpnet.OrchestratorInfo, error)

// WithPaymentInfo sets how the gate answers a live periodic payment.
func WithPaymentInfo(f InfoFunc) GateOption {
	return func(g *gate) { g.info = f }
}

// The admission's live side (orchestrator.LiveAdmission): a live stream's
// balance is keyed by (sender, mid), the manifest id the orchestrator made
// for the stream (server/ai_http.go:1065, live_payment.go:168).

// Credit is ProcessPayment(payment, mid), after our echoed-price check.
func (a *admission) Credit(ctx context.Context, mid string) error {
	if !a.g.r.OnChain() {
		return nil
	}
	if err := a.checkPrice(); err != nil {
		return err
	}
	if err := a.g.r.ProcessPayment(ctx, a.payment, mid); err != nil {
		return refuse(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// Sufficient is the start request's balance rule (ai_http.go:1069-1072):
// with an expected price above 0 the balance of (sender, mid) must reach
// one ticket's EV.
func (a *admission) Sufficient(mid string) bool {
	if !a.g.r.OnChain() || a.payment.GetExpectedPrice().GetPricePerUnit() <= 0 {
		return true
	}
	return a.g.r.SufficientBalance(a.sender, mid)
}

// Priced: go-livepeer runs a live payment processor only for a price above
// 0 (ai_http.go:1096-1114).
func (a *admission) Priced() bool {
	return a.g.r.OnChain() && a.payment.GetExpectedPrice().GetPricePerUnit() != 0 && a.payment.GetExpectedPrice().GetPixelsPerUnit() != 0
}

// Debit is livePaymentReceiver.AccountPayment (live_payment.go:156-176):
// fee = units × the start payment's expected price (calculateFee,
// :339-342); a balance below the fee is an error and nothing is debited.
func (a *admission) Debit(mid string, units int64) error {
	if !a.Priced() {
		return nil
	}
	ep := a.payment.GetExpectedPrice()
	fee := new(big.Rat).Mul(big.NewRat(ep.GetPricePerUnit(), ep.GetPixelsPerUnit()), big.NewRat(units, 1))
	bal := a.g.r.Balance(a.sender, mid)
	if bal.Cmp(fee) < 0 {
		return fmt.Errorf("insufficient balance, mid=%s, fee=%s, balance=%s", mid, fee.FloatString(0), bal.FloatString(0))
	}
	a.g.r.DebitFees(a.sender, mid, ep, units)
	return nil
}

// ManifestID is the Livepeer-Segment header's manifest id.
func (a *admission) ManifestID() string { return string(a.seg.GetManifestId()) }

// PaymentResult is the /payment reply (segment_rpc.go:247-273): a
// net.PaymentResult whose info has fresh ticket params and keeps the
// caller's auth token (new tokens come only from GetOrchestrator).
// PaymentResult has one field, info = 16 (net/lp_rpc.proto:365-368); it is
// encoded here with protowire, as our lpnet package does not carry it.
func (a *admission) PaymentResult(ctx context.Context) ([]byte, error) {
	if a.g.info == nil {
		return []byte{}, nil
	}
	info, err := a.g.info(ctx, a.sender, a.seg.GetCapabilities())
	if err != nil {
		return nil, fmt.Errorf("orchestrator info: %w", err)
	}
	info.AuthToken = a.seg.GetAuthToken()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("marshal payment result: %w", err)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, PaymentResultInfoField, protowire.BytesType), b), nil
}

// PaymentResultInfoField is net.PaymentResult's info field number.
const PaymentResultInfoField = 16
