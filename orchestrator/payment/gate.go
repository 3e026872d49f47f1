package payment

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// PriceFunc is the orchestrator's current price for a (pipeline, model).
type PriceFunc func(p capability.Pipeline, model string) *lpnet.PriceInfo

// Gate returns the orchestrator.Gate that checks jobs against this receiver.
func (r *Receiver) Gate(price PriceFunc) orchestrator.Gate {
	return &gate{r: r, price: price}
}

type gate struct {
	r     *Receiver
	price PriceFunc
}

func refuse(status int, format string, args ...any) *orchestrator.Refusal {
	return &orchestrator.Refusal{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Check decodes the payment (402 when bad) and verifies the segment
// credentials (403 when bad), in go-livepeer's order. Nothing is credited.
func (g *gate) Check(req *http.Request, job orchestrator.Job) (orchestrator.Admission, error) {
	a := &admission{g: g, job: job}
	onChain := g.r.OnChain()

	if ph := req.Header.Get(gateway.PaymentHeader); ph != "" {
		var p lpnet.Payment
		if err := pm.DecodeHeader(ph, &p); err != nil {
			return nil, refuse(http.StatusPaymentRequired, "invalid payment: %v", err)
		}
		a.payment = &p
	}
	price := g.price(job.Pipeline, job.Model)
	if onChain && price.GetPricePerUnit() > 0 {
		if a.payment == nil {
			return nil, refuse(http.StatusPaymentRequired, "missing payment: %s header required", gateway.PaymentHeader)
		}
		if len(a.payment.GetSender()) != common.AddressLength {
			return nil, refuse(http.StatusPaymentRequired, "invalid payment: sender is not a 20-byte address")
		}
		if a.payment.GetTicketParams() == nil {
			return nil, refuse(http.StatusPaymentRequired, "invalid payment: no ticket params")
		}
	}

	sh := req.Header.Get(gateway.SegmentHeader)
	if sh == "" {
		return nil, refuse(http.StatusForbidden, "missing segment credentials: %s header required", gateway.SegmentHeader)
	}
	var sd lpnet.SegData
	if err := pm.DecodeHeader(sh, &sd); err != nil {
		return nil, refuse(http.StatusForbidden, "invalid segment credentials: %v", err)
	}
	if onChain {
		if a.payment == nil {
			return nil, refuse(http.StatusForbidden, "invalid segment credentials: no payment sender to verify the signature against")
		}
		sender := common.BytesToAddress(a.payment.GetSender())
		if err := pm.VerifyKeccak(sender, gateway.SegDataMessage(&sd), sd.GetSig()); err != nil {
			return nil, refuse(http.StatusForbidden, "invalid segment credentials: signature: %v", err)
		}
	}
	if caps := sd.GetCapabilities(); caps != nil && !capability.Has(caps.GetBitstring(), job.Pipeline.ID) {
		return nil, refuse(http.StatusForbidden, "invalid segment credentials: capability %d not in segment capabilities", job.Pipeline.ID)
	}
	if err := g.r.VerifyAuthToken(sd.GetAuthToken()); err != nil {
		return nil, refuse(http.StatusForbidden, "invalid segment credentials: %v", err)
	}
	a.manifest = string(sd.GetManifestId())
	a.price = price
	return a, nil
}

type admission struct {
	g        *gate
	job      orchestrator.Job
	payment  *lpnet.Payment
	manifest string
	price    *lpnet.PriceInfo
}

func (a *admission) key() string {
	if a.payment == nil {
		return ""
	}
	return common.BytesToAddress(a.payment.GetSender()).Hex() + "|" + a.manifest
}

// Pay verifies and credits the tickets, then checks the balance covers the
// job (400 on any failure, as go-livepeer answers ProcessPayment errors).
func (a *admission) Pay(ctx context.Context) error {
	r := a.g.r
	if !r.OnChain() || a.price.GetPricePerUnit() == 0 {
		return nil
	}
	if err := a.credit(ctx); err != nil {
		return refuse(http.StatusBadRequest, "%v", err)
	}
	fee := pm.Fee(a.price, a.job.Units)
	r.mu.Lock()
	bal := r.balances[a.key()]
	ok := bal != nil && bal.Cmp(fee) >= 0
	r.mu.Unlock()
	if !ok {
		return refuse(http.StatusBadRequest, "Insufficient balance")
	}
	return nil
}

// Ticket errors the gate reports.
var (
	ErrParamsExpired = errors.New("ticketparams expired")
	ErrNonce         = errors.New("invalid ticket sendernonce")
	ErrRand          = errors.New("invalid recipientRand: ticket params were not issued by this orchestrator")
	ErrRecipient     = errors.New("invalid ticket recipient")
	ErrFunds         = errors.New("sender has insufficient deposit or reserve")
	ErrPriceChanged  = errors.New("expected price lower than the orchestrator's price")
)

func (a *admission) credit(ctx context.Context) error {
	r := a.g.r
	p := a.payment
	tp := p.GetTicketParams()
	sender := common.BytesToAddress(p.GetSender())
	ep := p.GetExpectedPrice()
	if ep.GetPixelsPerUnit() <= 0 ||
		new(big.Int).Mul(big.NewInt(ep.GetPricePerUnit()), big.NewInt(a.price.GetPixelsPerUnit())).Cmp(
			new(big.Int).Mul(big.NewInt(a.price.GetPricePerUnit()), big.NewInt(ep.GetPixelsPerUnit()))) < 0 {
		return ErrPriceChanged
	}
	tickets, sigs, err := pm.Tickets(p)
	if err != nil {
		return fmt.Errorf("invalid payment: %w", err)
	}
	if len(tickets) == 0 {
		return nil // credit already on the balance may still cover the job
	}
	if common.BytesToAddress(tp.GetRecipient()) != r.Address() {
		return ErrRecipient
	}
	// The rand binds seed, sender, face value, win prob, expiry, price and aux
	// data: recomputing it from what the gateway sent verifies all of them.
	rand := r.recipientRand(tp, sender, ep)
	if pm.RandHash(rand) != common.BytesToHash(tp.GetRecipientRandHash()) {
		return ErrRand
	}
	cctx, cancel := r.chainCtx(ctx)
	defer cancel()
	block, err := r.cfg.Chain.BlockNumber(cctx)
	if err != nil {
		return fmt.Errorf("chain unavailable: %w", err)
	}
	if new(big.Int).SetBytes(tp.GetExpirationBlock()).Cmp(new(big.Int).SetUint64(block)) <= 0 {
		return ErrParamsExpired
	}
	info, err := r.cfg.Chain.Sender(cctx, sender)
	if err != nil {
		return fmt.Errorf("sender info: %w", err)
	}
	face := new(big.Int).SetBytes(tp.GetFaceValue())
	if info.WithdrawRound != nil && info.WithdrawRound.Sign() != 0 ||
		info.Deposit == nil || info.Deposit.Cmp(face) < 0 || info.Reserve == nil || info.Reserve.Sign() <= 0 {
		return ErrFunds
	}
	for i, t := range tickets {
		if err := pm.Verify(sender, t.Hash().Bytes(), sigs[i]); err != nil {
			return fmt.Errorf("invalid ticket signature: %w", err)
		}
	}
	// Nonces: strictly above the highest seen for this params set, checked
	// and recorded under one lock so concurrent replays cannot both pass.
	r.mu.Lock()
	high := r.nonces[tickets[0].RecipientRandHash]
	prev := high
	for _, t := range tickets {
		if t.SenderNonce <= prev {
			r.mu.Unlock()
			return fmt.Errorf("%w %d: highest seen is %d", ErrNonce, t.SenderNonce, high)
		}
		prev = t.SenderNonce
	}
	r.nonces[tickets[0].RecipientRandHash] = prev
	bal := r.balances[a.key()]
	if bal == nil {
		bal = new(big.Rat)
		r.balances[a.key()] = bal
	}
	for _, t := range tickets {
		bal.Add(bal, t.EV())
	}
	r.mu.Unlock()

	for i, t := range tickets {
		if pm.IsWinning(sigs[i], rand, t.WinProb) {
			r.queueWinner(winner{t: t, sig: sigs[i], rand: rand})
		}
	}
	return nil
}

// Charge debits units × price after the job succeeded.
func (a *admission) Charge(units int64) {
	r := a.g.r
	if !r.OnChain() || a.price.GetPricePerUnit() == 0 {
		return
	}
	fee := pm.Fee(a.price, units)
	r.mu.Lock()
	defer r.mu.Unlock()
	if bal := r.balances[a.key()]; bal != nil {
		bal.Sub(bal, fee)
	}
}

// Balance is the credit a sender holds for a manifest id (wei).
func (r *Receiver) Balance(sender common.Address, manifestID string) *big.Rat {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.balances[sender.Hex()+"|"+manifestID]; b != nil {
		return new(big.Rat).Set(b)
	}
	return new(big.Rat)
}
