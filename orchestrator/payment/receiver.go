// Package payment is the orchestrator side of Livepeer payments and
// credentials: it issues ticket params and auth tokens for GetOrchestrator,
// and implements orchestrator.Gate — Livepeer-Payment and Livepeer-Segment
// checks, credit by ticket expected value, debit by units × price, and
// asynchronous redemption of winning tickets on the TicketBroker.
//
// The recipient rand of every ticket-params set is an HMAC of the params
// under the orchestrator's secret, so the only per-ticket state kept is the
// highest nonce seen per params set.
package payment

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Chain is what the receiver needs from the Livepeer contracts.
type Chain interface {
	// BlockNumber is the latest block.
	BlockNumber(ctx context.Context) (uint64, error)
	// CurrentRound is the RoundsManager round and its block hash.
	CurrentRound(ctx context.Context) (int64, common.Hash, error)
	// Sender is the TicketBroker deposit, reserve and withdraw round of a sender.
	Sender(ctx context.Context, addr common.Address) (SenderInfo, error)
	// Redeem submits a winning ticket to the TicketBroker.
	Redeem(ctx context.Context, t *pm.Ticket, sig []byte, recipientRand *big.Int) error
}

// SenderInfo is a sender's funds on the TicketBroker.
type SenderInfo struct {
	Deposit       *big.Int
	Reserve       *big.Int
	WithdrawRound *big.Int
}

// Config configures a Receiver.
type Config struct {
	// Signer is the orchestrator's key; its address is the ticket recipient.
	Signer *pm.Signer
	// Chain is nil for off-chain mode: no tickets, price 0, no signatures.
	Chain Chain
	// Secret keys the recipient rand HMAC (go-livepeer's pm recipient
	// secret, pm/recipient.go:105-115); random 32 bytes if empty.
	Secret []byte
	// AuthSecret keys the auth token HMAC (go-livepeer's orchestrator
	// secret, core/orchestrator.go:556); random 32 bytes if empty.
	AuthSecret []byte
	// FaceValue of issued tickets (wei); default 1e12. go-livepeer derives
	// it from gas price × redeemGas × txCostMultiplier; see README.
	FaceValue *big.Int
	// TicketEV is the expected value of one ticket (wei), go-livepeer's
	// -ticketEV; default FaceValue/10. A paid job needs a balance of at
	// least TicketEV (SufficientBalance).
	TicketEV *big.Int
	// ParamsValidBlocks is how long ticket params stay valid; default 40.
	ParamsValidBlocks uint64
	// TokenTTL is the auth token lifetime; default 30 min as go-livepeer.
	TokenTTL time.Duration
	// ChainTimeout bounds each chain call; default 5 s.
	ChainTimeout time.Duration
	// Seed returns a fresh ticket seed; default 32 random bytes.
	Seed func() []byte
	// SessionID returns a fresh auth token session id; default 4 random
	// bytes in hex, like go-livepeer's core.RandomManifestID.
	SessionID func() string
	// Now is the clock of auth token issue and expiry; default time.Now.
	Now func() time.Time
	Log *slog.Logger

	// Tickets, when set, keeps winning tickets on disk until redeemed
	// (ticketstore.go); without it a shutdown drops queued winners.
	Tickets *TicketStore
}

// MaxSenderNonces is how many tickets one set of ticket params (one
// recipientRand) accepts, go-livepeer's maxSenderNonces
// (pm/recipient.go:26, 386-389).
const MaxSenderNonces = 600

// Receiver issues payment terms and checks what comes back.
type Receiver struct {
	cfg Config

	mu       sync.Mutex
	nonces   map[string]*nonceSet // recipientRand (decimal) → nonces seen
	balances map[string]*big.Rat  // sender ‖ manifestID → credit in wei

	redeem chan winner
	done   chan struct{}
	wg     sync.WaitGroup
	stop   context.CancelFunc

	redeemed sync.WaitGroup // one per queued winner, for tests
}

// nonceSet is the nonces seen on one set of ticket params, kept until the
// params expire (pm/recipient.go:400-418).
type nonceSet struct {
	seen            map[uint32]bool
	expirationBlock *big.Int
}

type winner struct {
	t        *pm.Ticket
	sig      []byte
	rand     *big.Int
	attempts int // failed redemptions so far (TicketStore)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the OS has no entropy: nothing safe to do
	}
	return b
}

// NewReceiver starts a receiver; Close stops its redemption loop.
func NewReceiver(cfg Config) (*Receiver, error) {
	if cfg.Signer == nil && cfg.Chain != nil {
		return nil, errors.New("payment: on-chain mode needs the orchestrator's signer")
	}
	if len(cfg.Secret) == 0 {
		cfg.Secret = randomBytes(32)
	}
	if len(cfg.AuthSecret) == 0 {
		cfg.AuthSecret = randomBytes(32)
	}
	if cfg.FaceValue == nil {
		cfg.FaceValue = big.NewInt(1_000_000_000_000)
	}
	if cfg.TicketEV == nil {
		cfg.TicketEV = new(big.Int).Div(cfg.FaceValue, big.NewInt(10))
	}
	if cfg.ParamsValidBlocks == 0 {
		cfg.ParamsValidBlocks = 40
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 30 * time.Minute
	}
	if cfg.ChainTimeout == 0 {
		cfg.ChainTimeout = 5 * time.Second
	}
	if cfg.Seed == nil {
		cfg.Seed = func() []byte { return randomBytes(32) }
	}
	if cfg.SessionID == nil {
		cfg.SessionID = func() string { return hex.EncodeToString(randomBytes(4)) }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Receiver{
		cfg:    cfg,
		nonces: map[string]*nonceSet{}, balances: map[string]*big.Rat{},
		redeem: make(chan winner, 64), done: make(chan struct{}), stop: cancel,
	}
	r.wg.Add(1)
	go r.redeemLoop(ctx)
	if cfg.Tickets != nil && cfg.Chain != nil {
		r.wg.Add(1)
		go r.storeLoop(ctx)
	}
	return r, nil
}

// Close stops redemption; queued winners not yet submitted are dropped, or
// with a TicketStore stay on disk for the next start.
func (r *Receiver) Close() {
	r.stop()
	r.wg.Wait()
}

// OnChain reports whether tickets are required.
func (r *Receiver) OnChain() bool { return r.cfg.Chain != nil }

// Address is the recipient address (zero off-chain without a signer).
func (r *Receiver) Address() common.Address {
	if r.cfg.Signer == nil {
		return common.Address{}
	}
	return r.cfg.Signer.Address()
}

// Signer is the orchestrator's key (nil off-chain without one).
func (r *Receiver) Signer() *pm.Signer { return r.cfg.Signer }

// EV is the configured ticket expected value, go-livepeer's recipient.EV().
func (r *Receiver) EV() *big.Rat { return new(big.Rat).SetInt(r.cfg.TicketEV) }

// WaitRedemptions blocks until every winning ticket queued so far has been
// submitted (or failed); tests use it to read balances afterwards.
func (r *Receiver) WaitRedemptions() { r.redeemed.Wait() }

func (r *Receiver) chainCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.ChainTimeout)
}

// RatPrice is go-livepeer's common.RatPriceInfo: the price as a reduced
// rational, nil for a nil PriceInfo, an error for pixelsPerUnit 0.
func RatPrice(p *lpnet.PriceInfo) (*big.Rat, error) {
	if p == nil {
		return nil, nil
	}
	if p.GetPixelsPerUnit() == 0 {
		return nil, errors.New("pixels per unit is 0")
	}
	return big.NewRat(p.GetPricePerUnit(), p.GetPixelsPerUnit()), nil
}

// winProb is go-livepeer's recipient.winProb (pm/recipient.go:318-335):
// EV × ⌈(2^256−1)/faceValue⌉ (exactly EV × (2^256−1)/faceValue when that
// divides), 2^256−1 when faceValue = EV, 0 for a zero face value.
func (r *Receiver) winProb(faceValue *big.Int) *big.Int {
	if faceValue.Sign() == 0 {
		return new(big.Int)
	}
	if faceValue.Cmp(r.cfg.TicketEV) == 0 {
		return new(big.Int).Set(pm.MaxWinProb)
	}
	q, m := new(big.Int).DivMod(pm.MaxWinProb, faceValue, new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Mul(q, r.cfg.TicketEV)
}

// TicketParams issues ticket params for sender at price, as go-livepeer's
// recipient.TicketParams (pm/recipient.go:193-228): at price 0 face value and
// win probability are 0 but the params are still issued, since an on-chain
// go-livepeer gateway drops an orchestrator without them. Off-chain there are
// none.
func (r *Receiver) TicketParams(ctx context.Context, sender common.Address, price *lpnet.PriceInfo) (*lpnet.TicketParams, error) {
	if r.cfg.Chain == nil {
		return nil, nil
	}
	pr, err := RatPrice(price)
	if err != nil {
		return nil, fmt.Errorf("ticket params: price: %w", err)
	}
	if pr == nil {
		pr = new(big.Rat)
	}
	cctx, cancel := r.chainCtx(ctx)
	defer cancel()
	block, err := r.cfg.Chain.BlockNumber(cctx)
	if err != nil {
		return nil, fmt.Errorf("ticket params: block number: %w", err)
	}
	round, roundHash, err := r.cfg.Chain.CurrentRound(cctx)
	if err != nil {
		return nil, fmt.Errorf("ticket params: current round: %w", err)
	}
	r.prune(block)
	seed := new(big.Int).SetBytes(r.cfg.Seed())
	face := new(big.Int)
	if pr.Sign() > 0 {
		face.Set(r.cfg.FaceValue)
	}
	winProb := r.winProb(face)
	exp := new(big.Int).SetUint64(block + r.cfg.ParamsValidBlocks)
	rnd := r.recipientRand(seed, sender, face, winProb, exp, pr, round, roundHash)
	return &lpnet.TicketParams{
		Recipient:         r.Address().Bytes(),
		FaceValue:         face.Bytes(),
		WinProb:           winProb.Bytes(),
		RecipientRandHash: pm.RandHash(rnd).Bytes(),
		Seed:              seed.Bytes(),
		ExpirationBlock:   exp.Bytes(),
		ExpirationParams:  &lpnet.TicketExpirationParams{CreationRound: round, CreationRoundBlockHash: roundHash.Bytes()},
	}, nil
}

// recipientRand is go-livepeer's recipient.rand (pm/recipient.go:355-367):
// HMAC-SHA256(secret, seed ‖ sender ‖ faceValue ‖ winProb ‖ expirationBlock
// ‖ price.Num ‖ price.Denom ‖ auxData), every integer as minimal big-endian
// bytes (empty for 0), the price reduced. Binding every term means a gateway
// that alters any of them gets a rand whose hash does not match, and no
// per-params state is kept until a ticket arrives.
func (r *Receiver) recipientRand(seed *big.Int, sender common.Address, face, winProb, exp *big.Int, price *big.Rat, round int64, roundHash common.Hash) *big.Int {
	h := hmac.New(sha256.New, r.cfg.Secret)
	h.Write(seed.Bytes())
	h.Write(sender.Bytes())
	h.Write(face.Bytes())
	h.Write(winProb.Bytes())
	h.Write(exp.Bytes())
	h.Write(price.Num().Bytes())
	h.Write(price.Denom().Bytes())
	h.Write((&pm.Ticket{CreationRound: round, CreationRoundBlockHash: roundHash}).AuxData())
	return new(big.Int).SetBytes(h.Sum(nil))
}

// prune drops the nonce sets of params that expired by block, as
// go-livepeer's senderNoncesCleanupLoop does on each new L1 block.
func (r *Receiver) prune(block uint64) {
	b := new(big.Int).SetUint64(block)
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, s := range r.nonces {
		if s.expirationBlock.Cmp(b) <= 0 {
			delete(r.nonces, k)
		}
	}
}

// NonceSets is how many ticket-params sets currently hold nonces.
func (r *Receiver) NonceSets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.nonces)
}

// AuthToken issues a token valid TokenTTL for a fresh session id.
func (r *Receiver) AuthToken() *lpnet.AuthToken {
	return r.Token(r.cfg.SessionID(), r.cfg.Now().Add(r.cfg.TokenTTL).Unix())
}

// Token is go-livepeer's orchestrator.AuthToken (core/orchestrator.go:511-521):
// HMAC-SHA256(authSecret, sessionID ‖ big.Int(expiration).Bytes()).
func (r *Receiver) Token(sessionID string, expiration int64) *lpnet.AuthToken {
	h := hmac.New(sha256.New, r.cfg.AuthSecret)
	h.Write([]byte(sessionID))
	h.Write(big.NewInt(expiration).Bytes())
	return &lpnet.AuthToken{Token: h.Sum(nil), SessionId: sessionID, Expiration: expiration}
}

// Token errors, with go-livepeer's texts.
var (
	ErrNoToken      = errors.New("missing auth token")
	ErrTokenForged  = errors.New("invalid auth token")
	ErrTokenExpired = errors.New("expired auth token")
)

// CheckToken checks only that a token is this orchestrator's (its HMAC),
// as EndTranscodingSession does (server/rpc.go:572-579).
func (r *Receiver) CheckToken(t *lpnet.AuthToken) error {
	if t == nil {
		return ErrNoToken
	}
	if !hmac.Equal(t.GetToken(), r.Token(t.GetSessionId(), t.GetExpiration()).GetToken()) {
		return ErrTokenForged
	}
	return nil
}

// VerifyAuthToken checks a token this receiver issued and that it has not
// expired: rejected once now is after the expiration (segment_rpc.go:433-444).
func (r *Receiver) VerifyAuthToken(t *lpnet.AuthToken) error {
	if err := r.CheckToken(t); err != nil {
		return err
	}
	if r.cfg.Now().After(time.Unix(t.GetExpiration(), 0)) {
		return ErrTokenExpired
	}
	return nil
}

func (r *Receiver) redeemLoop(ctx context.Context) {
	defer r.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-r.redeem:
			cctx, cancel := r.chainCtx(ctx)
			err := r.cfg.Chain.Redeem(cctx, w.t, w.sig, w.rand)
			cancel()
			r.settled(ctx, w, err)
			if err != nil {
				r.cfg.Log.Warn("winning ticket redemption failed", "sender", w.t.Sender.Hex(), "nonce", w.t.SenderNonce, "err", err)
			} else {
				r.cfg.Log.Info("winning ticket redeemed", "sender", w.t.Sender.Hex(), "face_value", w.t.FaceValue)
			}
			r.redeemed.Done()
		}
	}
}
