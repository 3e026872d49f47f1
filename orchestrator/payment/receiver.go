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
	"encoding/binary"
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
	// Secret keys the recipient rand and auth token HMACs; random if empty.
	Secret []byte
	// FaceValue of issued tickets (wei); default 1e12.
	FaceValue *big.Int
	// TicketEV is the expected value of one ticket (wei); default FaceValue/10.
	TicketEV *big.Int
	// ParamsValidBlocks is how long ticket params stay valid; default 40.
	ParamsValidBlocks uint64
	// TokenTTL is the auth token lifetime; default 30 min as go-livepeer.
	TokenTTL time.Duration
	// ChainTimeout bounds each chain call; default 5 s.
	ChainTimeout time.Duration
	Log          *slog.Logger

	// Tickets, when set, keeps winning tickets on disk until redeemed
	// (ticketstore.go); without it a shutdown drops queued winners.
	Tickets *TicketStore
}

// Receiver issues payment terms and checks what comes back.
type Receiver struct {
	cfg     Config
	winProb *big.Int

	mu       sync.Mutex
	nonces   map[common.Hash]uint32 // recipientRandHash → highest nonce seen
	balances map[string]*big.Rat    // sender ‖ manifestID → credit in wei

	redeem chan winner
	done   chan struct{}
	wg     sync.WaitGroup
	stop   context.CancelFunc

	redeemed sync.WaitGroup // one per queued winner, for tests
}

type winner struct {
	t        *pm.Ticket
	sig      []byte
	rand     *big.Int
	attempts int // failed redemptions so far (TicketStore)
}

// NewReceiver starts a receiver; Close stops its redemption loop.
func NewReceiver(cfg Config) (*Receiver, error) {
	if cfg.Signer == nil && cfg.Chain != nil {
		return nil, errors.New("payment: on-chain mode needs the orchestrator's signer")
	}
	if len(cfg.Secret) == 0 {
		cfg.Secret = make([]byte, 32)
		if _, err := rand.Read(cfg.Secret); err != nil {
			return nil, fmt.Errorf("payment: secret: %w", err)
		}
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
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	// winProb = EV/faceValue scaled to 2^256-1.
	wp := new(big.Int).Mul(pm.MaxWinProb, cfg.TicketEV)
	wp.Div(wp, cfg.FaceValue)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Receiver{
		cfg: cfg, winProb: wp,
		nonces: map[common.Hash]uint32{}, balances: map[string]*big.Rat{},
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

// WaitRedemptions blocks until every winning ticket queued so far has been
// submitted (or failed); tests use it to read balances afterwards.
func (r *Receiver) WaitRedemptions() { r.redeemed.Wait() }

func (r *Receiver) chainCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.ChainTimeout)
}

// TicketParams issues ticket params for sender at price. Off-chain, or at
// price 0, there are none.
func (r *Receiver) TicketParams(ctx context.Context, sender common.Address, price *lpnet.PriceInfo) (*lpnet.TicketParams, error) {
	if r.cfg.Chain == nil || price.GetPricePerUnit() == 0 {
		return nil, nil
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
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("ticket params: seed: %w", err)
	}
	tp := &lpnet.TicketParams{
		Recipient:        r.Address().Bytes(),
		FaceValue:        r.cfg.FaceValue.Bytes(),
		WinProb:          r.winProb.Bytes(),
		Seed:             seed,
		ExpirationBlock:  new(big.Int).SetUint64(block + r.cfg.ParamsValidBlocks).Bytes(),
		ExpirationParams: &lpnet.TicketExpirationParams{CreationRound: round, CreationRoundBlockHash: roundHash.Bytes()},
	}
	tp.RecipientRandHash = pm.RandHash(r.recipientRand(tp, sender, price)).Bytes()
	return tp, nil
}

// recipientRand = HMAC-SHA256(secret, seed ‖ sender ‖ faceValue ‖ winProb ‖
// expirationBlock ‖ price num ‖ price denom ‖ auxData). Binding every term
// means a gateway that alters any of them gets a rand whose hash does not
// match, and we keep no per-params state.
func (r *Receiver) recipientRand(tp *lpnet.TicketParams, sender common.Address, price *lpnet.PriceInfo) *big.Int {
	h := hmac.New(sha256.New, r.cfg.Secret)
	word := func(b []byte) { h.Write(common.LeftPadBytes(b, 32)) }
	word(tp.GetSeed())
	h.Write(sender.Bytes())
	word(tp.GetFaceValue())
	word(tp.GetWinProb())
	word(tp.GetExpirationBlock())
	word(big.NewInt(price.GetPricePerUnit()).Bytes())
	word(big.NewInt(price.GetPixelsPerUnit()).Bytes())
	ep := tp.GetExpirationParams()
	h.Write((&pm.Ticket{CreationRound: ep.GetCreationRound(), CreationRoundBlockHash: common.BytesToHash(ep.GetCreationRoundBlockHash())}).AuxData())
	return new(big.Int).SetBytes(h.Sum(nil))
}

// AuthToken issues a token: HMAC-SHA256(secret, sessionID ‖ big-endian
// expiration), valid TokenTTL.
func (r *Receiver) AuthToken() *lpnet.AuthToken {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	t := &lpnet.AuthToken{SessionId: hex.EncodeToString(id), Expiration: time.Now().Add(r.cfg.TokenTTL).Unix()}
	t.Token = r.tokenMAC(t)
	return t
}

func (r *Receiver) tokenMAC(t *lpnet.AuthToken) []byte {
	h := hmac.New(sha256.New, r.cfg.Secret)
	h.Write([]byte(t.GetSessionId()))
	var exp [8]byte
	binary.BigEndian.PutUint64(exp[:], uint64(t.GetExpiration()))
	h.Write(exp[:])
	return h.Sum(nil)
}

// Token errors.
var (
	ErrNoToken      = errors.New("missing auth token")
	ErrTokenForged  = errors.New("invalid auth token")
	ErrTokenExpired = errors.New("expired auth token")
)

// VerifyAuthToken checks a token this receiver issued.
func (r *Receiver) VerifyAuthToken(t *lpnet.AuthToken) error {
	if t == nil || len(t.GetToken()) == 0 {
		return ErrNoToken
	}
	if !hmac.Equal(t.GetToken(), r.tokenMAC(t)) {
		return ErrTokenForged
	}
	if time.Now().Unix() >= t.GetExpiration() {
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
