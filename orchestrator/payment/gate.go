package payment

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// PriceFunc is the orchestrator's current price for a (pipeline, model).
type PriceFunc func(p capability.Pipeline, model string) *lpnet.PriceInfo

// GateOption configures a Gate.
type GateOption func(*gate)

// WithCapabilities makes the gate check every job's SegData capabilities
// against the orchestrator's own with go-livepeer's CompatibleWith, as
// verifySegCreds does (server/segment_rpc.go:425-428): 403 when incompatible.
func WithCapabilities(caps func() *lpnet.Capabilities) GateOption {
	return func(g *gate) { g.caps = caps }
}

// Gate returns the orchestrator.Gate that checks jobs against this receiver.
func (r *Receiver) Gate(price PriceFunc, opts ...GateOption) orchestrator.Gate {
	g := &gate{r: r, price: price, sigs: new(verifiedSigs), segs: new(decodedSegs)}
	for _, o := range opts {
		o(g)
	}
	return g
}

type gate struct {
	r     *Receiver
	price PriceFunc
	caps  func() *lpnet.Capabilities
	info  InfoFunc // the /payment reply's OrchestratorInfo (live.go)
	sigs  *verifiedSigs
	segs  *decodedSegs
}

func refuse(status int, format string, args ...any) *orchestrator.Refusal {
	return &orchestrator.Refusal{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Check decodes the payment (402 when it is not base64 protobuf) and
// verifies the segment credentials against the payment's sender (403), in
// go-livepeer's order (server/ai_http.go:1380-1392). Nothing is credited.
// An absent Livepeer-Payment header is an empty Payment, as in go-livepeer:
// on chain its zero sender then fails the segment signature.
func (g *gate) Check(req *http.Request, job orchestrator.Job) (orchestrator.Admission, error) {
	onChain := g.r.OnChain()
	var p lpnet.Payment
	if err := pm.DecodeHeader(req.Header.Get(gateway.PaymentHeader), &p); err != nil {
		return nil, refuse(http.StatusPaymentRequired, "invalid payment: %v", err)
	}
	sender := common.BytesToAddress(p.GetSender())

	sh := req.Header.Get(gateway.SegmentHeader)
	if sh == "" {
		return nil, refuse(http.StatusForbidden, "missing segment credentials: %s header required", gateway.SegmentHeader)
	}
	sd, err := g.segs.decode(sh) // shared: read only
	if err != nil {
		return nil, refuse(http.StatusForbidden, "invalid segment credentials: %v", err)
	}
	if onChain {
		if err := g.sigs.verifyKeccak(sender, gateway.SegDataMessage(sd), sd.GetSig()); err != nil {
			return nil, refuse(http.StatusForbidden, "invalid segment credentials: signature does not verify against the payment sender %s: %v", sender.Hex(), err)
		}
	}
	if g.caps != nil {
		// go-livepeer reads absent SegData capabilities as empty ones
		// (server/rpc.go:801-806), which any orchestrator satisfies.
		sc := sd.GetCapabilities()
		if sc == nil {
			sc = &lpnet.Capabilities{}
		}
		if !capability.CompatibleWith(sc, g.caps()) {
			return nil, refuse(http.StatusForbidden, "Capability check failed: the segment's capabilities %v are not compatible with this orchestrator's", capability.IDs(sc.GetBitstring()))
		}
	}
	if err := g.r.VerifyAuthToken(sd.GetAuthToken()); err != nil {
		return nil, refuse(http.StatusForbidden, "invalid segment credentials: %v", err)
	}
	return &admission{g: g, job: job, payment: &p, sender: sender, seg: sd, manifest: gateway.ManifestID(job.Pipeline.ID, job.Model)}, nil
}

type admission struct {
	g        *gate
	job      orchestrator.Job
	payment  *lpnet.Payment
	sender   common.Address
	seg      *lpnet.SegData
	manifest string // "<cap>_<model>", the balance key (ai_http.go:1577)
}

// Pay is go-livepeer's ProcessPayment then SufficientBalance
// (ai_http.go:1584-1603): any payment error and a balance under one
// ticket's EV when the expected price is above 0 are 400.
func (a *admission) Pay(ctx context.Context) error {
	r := a.g.r
	if !r.OnChain() {
		return nil
	}
	if err := a.checkPrice(); err != nil {
		return err
	}
	if err := r.ProcessPayment(ctx, a.payment, a.manifest); err != nil {
		return refuse(http.StatusBadRequest, "%v", err)
	}
	if a.payment.GetExpectedPrice().GetPricePerUnit() > 0 && !r.SufficientBalance(a.sender, a.manifest) {
		return refuse(http.StatusBadRequest, "Insufficient balance")
	}
	return nil
}

// checkPrice is our addition: the echoed price may not be below ours, or a
// gateway could name any price (go-livepeer trusts the gateway's echo here).
func (a *admission) checkPrice() error {
	if our := a.g.price(a.job.Pipeline, a.job.Model); our.GetPricePerUnit() > 0 {
		ep := a.payment.GetExpectedPrice()
		if ep.GetPixelsPerUnit() <= 0 ||
			new(big.Int).Mul(big.NewInt(ep.GetPricePerUnit()), big.NewInt(our.GetPixelsPerUnit())).Cmp(
				new(big.Int).Mul(big.NewInt(our.GetPricePerUnit()), big.NewInt(ep.GetPixelsPerUnit()))) < 0 {
			return refuse(http.StatusBadRequest, "%v: expected %d/%d wei per unit, price is %d/%d; call GetOrchestrator for the current price",
				ErrPriceChanged, ep.GetPricePerUnit(), ep.GetPixelsPerUnit(), our.GetPricePerUnit(), our.GetPixelsPerUnit())
		}
	}
	return nil
}

// Charge debits units × the payment's expected price after the job
// succeeded (DebitFees, ai_http.go:1661); the balance may go negative.
func (a *admission) Charge(units int64) {
	if !a.g.r.OnChain() {
		return
	}
	a.g.r.DebitFees(a.sender, a.manifest, a.payment.GetExpectedPrice(), units)
}

// Ticket errors, with go-livepeer's texts where it has one.
var (
	ErrParamsExpired = errors.New("TicketParams expired")
	ErrNonce         = errors.New("invalid ticket senderNonce")
	ErrRand          = errors.New("invalid recipientRand for ticket recipientRandHash")
	ErrRecipient     = errors.New("invalid ticket recipient")
	ErrSender        = errors.New("invalid ticket sender")
	ErrSig           = errors.New("invalid ticket signature")
	ErrFunds         = errors.New("sender has insufficient deposit or reserve")
	ErrPriceChanged  = errors.New("expected price lower than the orchestrator's price")
)

// ProcessPayment is go-livepeer's orchestrator.ProcessPayment
// (core/orchestrator.go:113-235) with recipient.ReceiveTicket
// (pm/recipient.go:150-185): recipientRand from the ticket params, the
// payment's expected price and Payment.expiration_params (field 3); each
// ticket validated, its nonce recorded (at most MaxSenderNonces per
// recipientRand), its EV credited to (sender, manifestID) while no ticket
// has failed. A bad recipient, sender or rand stops at once; a bad
// signature, a used or surplus nonce or expired params make the payment
// fail after the rest are processed. No ticket params means a free job.
func (r *Receiver) ProcessPayment(ctx context.Context, p *lpnet.Payment, manifestID string) error {
	if !r.OnChain() {
		return nil
	}
	tp := p.GetTicketParams()
	if len(p.GetSender()) == 0 && tp != nil {
		return errors.New("could not find sender for payment")
	}
	if tp == nil {
		return nil
	}
	sender := common.BytesToAddress(p.GetSender())
	price, err := RatPrice(p.GetExpectedPrice())
	if err != nil {
		return fmt.Errorf("invalid expected price sent with payment err=%q", err)
	}
	if price == nil {
		return errors.New("invalid expected price sent with payment err=\"expected price is nil\"")
	}
	if len(p.GetTicketSenderParams()) == 0 {
		return nil // credit already on the balance may still cover the job
	}
	ep := p.GetExpirationParams()
	if ep == nil {
		// go-livepeer dereferences it unchecked; say what is missing instead.
		return errors.New("payment has no expiration_params (Payment field 3): send the creation round and its block hash from the ticket params")
	}
	if len(tp.GetFaceValue()) > 32 || len(tp.GetWinProb()) > 32 || len(tp.GetExpirationBlock()) > 32 {
		return errors.New("face_value, win_prob or expiration_block longer than 32 bytes")
	}
	seed := new(big.Int).SetBytes(tp.GetSeed())
	face := new(big.Int).SetBytes(tp.GetFaceValue())
	winProb := new(big.Int).SetBytes(tp.GetWinProb())
	exp := new(big.Int).SetBytes(tp.GetExpirationBlock())
	roundHash := common.BytesToHash(ep.GetCreationRoundBlockHash())
	rnd := r.recipientRand(seed, sender, face, winProb, exp, price, ep.GetCreationRound(), roundHash)
	randHash := pm.RandHash(rnd)

	cctx, cancel := r.chainCtx(ctx)
	defer cancel()
	// ValidateSender (pm/sendermonitor.go:176-190), plus our funds check.
	info, err := r.cfg.Chain.Sender(cctx, sender)
	if err != nil {
		return fmt.Errorf("could not get sender info for %v: %w", sender.Hex(), err)
	}
	if info.WithdrawRound != nil && info.WithdrawRound.Sign() != 0 ||
		info.Deposit == nil || info.Deposit.Cmp(face) < 0 || info.Reserve == nil || info.Reserve.Sign() <= 0 {
		return fmt.Errorf("%w: %s", ErrFunds, sender.Hex())
	}
	block, err := r.cfg.Chain.BlockNumber(cctx)
	if err != nil {
		return fmt.Errorf("chain unavailable: %w", err)
	}
	latest := new(big.Int).SetUint64(block)

	var receiveErr error
	for _, sp := range p.GetTicketSenderParams() {
		t := &pm.Ticket{
			Recipient: common.BytesToAddress(tp.GetRecipient()), Sender: sender,
			FaceValue: face, WinProb: winProb, SenderNonce: sp.GetSenderNonce(),
			RecipientRandHash:      common.BytesToHash(tp.GetRecipientRandHash()),
			CreationRound:          ep.GetCreationRound(),
			CreationRoundBlockHash: roundHash,
		}
		sig := sp.GetSig()
		// ValidateTicket (pm/validator.go:47-65).
		switch {
		case t.Recipient != r.Address():
			return ErrRecipient
		case t.Sender == (common.Address{}):
			return ErrSender
		case t.RecipientRandHash != randHash:
			return ErrRand
		}
		if pm.Verify(sender, t.Hash().Bytes(), sig) != nil {
			receiveErr = ErrSig
			continue
		}
		won := pm.IsWinning(sig, rnd, winProb)
		if err := r.useNonce(rnd, exp, sender, t.SenderNonce); err != nil {
			receiveErr = err
			continue // a replayed winner is not redeemed twice
		}
		if exp.Cmp(latest) <= 0 {
			receiveErr = ErrParamsExpired
		}
		if receiveErr == nil {
			r.Credit(sender, manifestID, t.EV())
		}
		if won {
			r.queueWinner(winner{t: t, sig: sig, rand: rnd})
		}
	}
	return receiveErr
}

// useNonce records nonce on the params set of rnd (updateSenderNonce,
// pm/recipient.go:369-393).
func (r *Receiver) useNonce(rnd, exp *big.Int, sender common.Address, nonce uint32) error {
	key := rnd.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.nonces[key]
	if s == nil {
		s = &nonceSet{seen: map[uint32]bool{}, expirationBlock: new(big.Int).Set(exp)}
		r.nonces[key] = s
	} else if s.seen[nonce] {
		return fmt.Errorf("%w: already seen sender=%v nonce=%v", ErrNonce, sender.Hex(), nonce)
	}
	if len(s.seen) >= MaxSenderNonces {
		return fmt.Errorf("%w: too many values sender=%v nonce=%v", ErrNonce, sender.Hex(), nonce)
	}
	s.seen[nonce] = true
	return nil
}

func balanceKey(sender common.Address, manifestID string) string {
	return sender.Hex() + "|" + manifestID
}

// Credit adds amount to the balance of (sender, manifestID).
func (r *Receiver) Credit(sender common.Address, manifestID string, amount *big.Rat) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.balances[balanceKey(sender, manifestID)]
	if b == nil {
		b = new(big.Rat)
		r.balances[balanceKey(sender, manifestID)] = b
	}
	b.Add(b, amount)
}

// SufficientBalance is go-livepeer's rule (core/orchestrator.go:468-479):
// the balance of (sender, manifestID) is at least one ticket's configured EV.
func (r *Receiver) SufficientBalance(sender common.Address, manifestID string) bool {
	return r.Balance(sender, manifestID).Cmp(r.EV()) >= 0
}

// DebitFees takes units × price off the balance (core/orchestrator.go:481-488).
func (r *Receiver) DebitFees(sender common.Address, manifestID string, price *lpnet.PriceInfo, units int64) {
	if price.GetPixelsPerUnit() == 0 {
		return
	}
	fee := big.NewRat(price.GetPricePerUnit(), price.GetPixelsPerUnit())
	fee.Mul(fee, big.NewRat(units, 1))
	r.Credit(sender, manifestID, fee.Neg(fee))
}

// Balance is the credit a sender holds for a manifest id (wei).
func (r *Receiver) Balance(sender common.Address, manifestID string) *big.Rat {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.balances[balanceKey(sender, manifestID)]; b != nil {
		return new(big.Rat).Set(b)
	}
	return new(big.Rat)
}
