package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// go-livepeer's gateway defaults for its sender-side checks
// (-maxTicketEV, -maxTotalEV, -depositMultiplier).
var (
	DefaultMaxTicketEV       = big.NewRat(3_000_000_000_000, 1)
	DefaultMaxTotalEV        = big.NewRat(20_000_000_000_000, 1)
	DefaultDepositMultiplier = 1
)

// Sender-side refusals: the gateway declines to pay before it signs a
// ticket. The first group is the gateway's own limits or funds (its choice,
// never the orchestrator's fault); the second is the orchestrator's.
var (
	ErrTicketEVTooHigh  = errors.New("ticket expected value above the gateway's maximum")
	ErrTotalEVTooHigh   = errors.New("expected value of the job's tickets above the gateway's maximum")
	ErrFaceValueTooHigh = errors.New("ticket face value above the gateway's deposit / deposit multiplier")
	ErrSenderFunds      = errors.New("gateway cannot pay: TicketBroker deposit or reserve empty, or an unlock pending")
	ErrChain            = errors.New("gateway's chain read failed")

	ErrParamsExpired   = errors.New("ticket params expired or within 1 block of expiry")
	ErrBadTicketParams = errors.New("orchestrator's ticket params are malformed")
	ErrBadPrice        = errors.New("orchestrator's price is malformed")
)

// Chain is what a paying gateway reads from Ethereum for its sender-side
// checks.
type Chain interface {
	// LastBlock is the latest block of the clock ticket params expire by
	// (the L1 block on Arbitrum, as go-livepeer's LastSeenL1Block).
	LastBlock(ctx context.Context) (*big.Int, error)
	// SenderInfo is the gateway's deposit, reserve and withdraw round on the
	// TicketBroker.
	SenderInfo(ctx context.Context, sender common.Address) (contracts.SenderInfo, error)
}

// EthChain is the Chain over JSON-RPC: block headers from Client, the
// TicketBroker through the contracts bindings. A nil Broker reads no sender
// info (the deposit checks then fail with ErrChain).
type EthChain struct {
	Client *ethclient.Client
	Broker *contracts.Livepeer
}

// LastBlock implements Chain: the latest header's l1BlockNumber on Arbitrum
// (ticket expiry counts L1 blocks there), else its number.
func (c EthChain) LastBlock(ctx context.Context) (*big.Int, error) {
	var h struct {
		Number *hexutil.Big `json:"number"`
		L1     *hexutil.Big `json:"l1BlockNumber"`
	}
	if err := c.Client.Client().CallContext(ctx, &h, "eth_getBlockByNumber", "latest", false); err != nil {
		return nil, err
	}
	switch {
	case h.L1 != nil:
		return h.L1.ToInt(), nil
	case h.Number != nil:
		return h.Number.ToInt(), nil
	}
	return nil, errors.New("latest block has no number")
}

// SenderInfo implements Chain.
func (c EthChain) SenderInfo(ctx context.Context, sender common.Address) (contracts.SenderInfo, error) {
	if c.Broker == nil {
		return contracts.SenderInfo{}, errors.New("no TicketBroker address configured")
	}
	return c.Broker.SenderInfo(ctx, sender)
}

// Cache defaults: the block clock is re-read at most every second (L1 blocks
// come every 12 s; the 1-block margin covers the staleness), the deposit and
// reserve every 30 s (they change only when a ticket wins or the gateway
// funds itself).
const (
	DefaultBlockCacheTTL  = time.Second
	DefaultSenderCacheTTL = 30 * time.Second
	// ChainTimeout bounds one chain read.
	ChainTimeout = 5 * time.Second
)

// chainCache keeps the last block and sender info for a short while, so a
// round of probes does not read the chain per probe.
type chainCache struct {
	mu        sync.Mutex
	block     *big.Int
	blockAt   time.Time
	sender    contracts.SenderInfo
	senderAt  time.Time
	senderFor common.Address
}

func (g *Gateway) lastBlock(ctx context.Context) (*big.Int, error) {
	ttl := g.BlockCacheTTL
	if ttl == 0 {
		ttl = DefaultBlockCacheTTL
	}
	c := &g.chain
	c.mu.Lock()
	if c.block != nil && time.Since(c.blockAt) < ttl {
		b := c.block
		c.mu.Unlock()
		return b, nil
	}
	c.mu.Unlock()
	ctx, cancel := chainCtx(ctx)
	defer cancel()
	b, err := g.Chain.LastBlock(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: latest block: %v", ErrChain, err)
	}
	c.mu.Lock()
	c.block, c.blockAt = b, time.Now()
	c.mu.Unlock()
	return b, nil
}

func (g *Gateway) senderInfo(ctx context.Context, addr common.Address) (contracts.SenderInfo, error) {
	ttl := g.SenderCacheTTL
	if ttl == 0 {
		ttl = DefaultSenderCacheTTL
	}
	c := &g.chain
	c.mu.Lock()
	if c.senderFor == addr && !c.senderAt.IsZero() && time.Since(c.senderAt) < ttl {
		s := c.sender
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()
	ctx, cancel := chainCtx(ctx)
	defer cancel()
	s, err := g.Chain.SenderInfo(ctx, addr)
	if err != nil {
		return contracts.SenderInfo{}, fmt.Errorf("%w: TicketBroker sender info: %v", ErrChain, err)
	}
	c.mu.Lock()
	c.sender, c.senderAt, c.senderFor = s, time.Now(), addr
	c.mu.Unlock()
	return s, nil
}

// chainCtx bounds a chain read by ChainTimeout (or ctx's earlier deadline):
// a hanging RPC must not use up a probe's whole budget.
func chainCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, ChainTimeout)
}

// checkPrice refuses a malformed price (the orchestrator's fault) and one
// above MaxPricePerUnit (the gateway's ceiling).
func (g *Gateway) checkPrice(price *lpnet.PriceInfo) error {
	ppu, pxu := price.GetPricePerUnit(), price.GetPixelsPerUnit()
	if ppu < 0 || pxu < 0 || (ppu > 0 && pxu == 0) {
		return fmt.Errorf("%w: %d wei per %d units", ErrBadPrice, ppu, pxu)
	}
	if g.MaxPricePerUnit == nil || g.MaxPricePerUnit.Sign() <= 0 || ppu == 0 {
		return nil
	}
	if p := big.NewRat(ppu, pxu); p.Cmp(g.MaxPricePerUnit) > 0 {
		return fmt.Errorf("%w: %s wei per unit > maximum %s", ErrPriceTooHigh, p.FloatString(3), g.MaxPricePerUnit.FloatString(3))
	}
	return nil
}

// checkTicketParams refuses params a ticket cannot be made from: the
// orchestrator's fault, never the gateway's limits. Face value and win
// probability 0 are a free model's params (pm/recipient.go:198-203), not
// malformed: they make tickets of EV 0, so none are sent.
func checkTicketParams(tp *lpnet.TicketParams) error {
	switch {
	case len(tp.GetRecipient()) != common.AddressLength:
		return fmt.Errorf("%w: recipient is %d bytes, want 20", ErrBadTicketParams, len(tp.GetRecipient()))
	case len(tp.GetRecipientRandHash()) != common.HashLength:
		return fmt.Errorf("%w: recipient_rand_hash is %d bytes, want 32", ErrBadTicketParams, len(tp.GetRecipientRandHash()))
	case len(tp.GetFaceValue()) > 32 || len(tp.GetWinProb()) > 32 || len(tp.GetExpirationBlock()) > 32 || len(tp.GetSeed()) > 32:
		return fmt.Errorf("%w: face_value, win_prob, seed or expiration_block longer than 32 bytes", ErrBadTicketParams)
	case bigInt(tp.GetExpirationBlock()).Sign() == 0:
		// pm/sender.go:190-192
		return fmt.Errorf("%w: expiration block 0", ErrBadTicketParams)
	}
	// pm/sender.go:204-206: a ticket worth its whole face value or more
	// (win probability ≥ 1) is not a lottery ticket.
	face := bigInt(tp.GetFaceValue())
	if ev := pm.EV(face, bigInt(tp.GetWinProb())); ev.Sign() > 0 && ev.Cmp(new(big.Rat).SetInt(face)) >= 0 {
		return fmt.Errorf("%w: ticket EV %s wei not below face value %s", ErrBadTicketParams, ev.FloatString(0), face)
	}
	return nil
}

// paramsExpiring reports whether tp expires within one block of last, when
// go-livepeer's sender refuses them and its gateway refreshes the session
// (pm/sender.go:194-197, paramsExpiryBuffer = 1; server/broadcast.go:1646-1655):
// expirationBlock − last ≤ 1.
func paramsExpiring(tp *lpnet.TicketParams, last *big.Int) bool {
	return new(big.Int).Sub(bigInt(tp.GetExpirationBlock()), last).Cmp(big.NewInt(1)) <= 0
}

// checkExpiry refuses params that are within a block of expiry by the
// chain's clock; without a Chain there is no clock and nothing to check.
func (g *Gateway) checkExpiry(ctx context.Context, tp *lpnet.TicketParams) error {
	if g.Chain == nil {
		return nil
	}
	last, err := g.lastBlock(ctx)
	if err != nil {
		return err
	}
	if paramsExpiring(tp, last) {
		return fmt.Errorf("%w: expiration block %s, latest %s", ErrParamsExpired, bigInt(tp.GetExpirationBlock()), last)
	}
	return nil
}

// checkTickets is the rest of go-livepeer's sender.validateTicketParams
// (pm/sender.go:199-230) for n tickets of expected value ev > 0, run before
// anything is signed: ev ≤ MaxTicketEV, the sender's deposit and reserve
// non-zero and no unlock pending, n × ev ≤ MaxTotalEV, face value ≤
// deposit / DepositMultiplier. go-livepeer skips all of these when ev is 0.
func (g *Gateway) checkTickets(ctx context.Context, tp *lpnet.TicketParams, ev *big.Rat, n int) error {
	if ev.Sign() <= 0 {
		return nil
	}
	if g.MaxTicketEV != nil && g.MaxTicketEV.Sign() > 0 && ev.Cmp(g.MaxTicketEV) > 0 {
		return fmt.Errorf("%w: %s wei > maximum %s (-maxTicketEV)", ErrTicketEVTooHigh, ev.FloatString(0), g.MaxTicketEV.FloatString(0))
	}
	var info contracts.SenderInfo
	funds := g.checksFunds()
	if funds {
		var err error
		if info, err = g.senderInfo(ctx, g.Sender.Address()); err != nil {
			return err
		}
		if err := fundsErr(g.Sender.Address(), info); err != nil {
			return err
		}
	}
	if total := new(big.Rat).Mul(ev, big.NewRat(int64(n), 1)); g.MaxTotalEV != nil && g.MaxTotalEV.Sign() > 0 && total.Cmp(g.MaxTotalEV) > 0 {
		return fmt.Errorf("%w: %d tickets × %s wei = %s > maximum %s (-maxTotalEV)", ErrTotalEVTooHigh, n, ev.FloatString(0),
			total.FloatString(0), g.MaxTotalEV.FloatString(0))
	}
	if !funds {
		return nil
	}
	maxFace := new(big.Int).Div(info.Deposit, big.NewInt(int64(g.DepositMultiplier)))
	if face := bigInt(tp.GetFaceValue()); face.Cmp(maxFace) > 0 {
		return fmt.Errorf("%w: %s wei > deposit %s / %d (-depositMultiplier)", ErrFaceValueTooHigh, face, info.Deposit, g.DepositMultiplier)
	}
	return nil
}

// checksFunds says whether this gateway reads its sender's TicketBroker
// funds before paying: on chain, with a Chain and a deposit multiplier.
func (g *Gateway) checksFunds() bool {
	return g.Sender != nil && g.Chain != nil && g.DepositMultiplier > 0
}

// fundsErr is go-livepeer's sender-side funds rule (validateSender,
// pm/sender.go:117-132, called from validateTicketParams at 210-217): no
// unlock pending, a reserve and a deposit above 0.
func fundsErr(sender common.Address, info contracts.SenderInfo) error {
	switch {
	case info.WithdrawRound != nil && info.WithdrawRound.Sign() != 0:
		return fmt.Errorf("%w: %s: unlock pending, withdraw round %s", ErrSenderFunds, sender.Hex(), info.WithdrawRound)
	case info.ReserveRemaining == nil || info.ReserveRemaining.Sign() <= 0:
		return fmt.Errorf("%w: %s: reserve is 0 (fund it with fundDepositAndReserve)", ErrSenderFunds, sender.Hex())
	case info.Deposit == nil || info.Deposit.Sign() <= 0:
		return fmt.Errorf("%w: %s: deposit is 0 (fund it with fundDepositAndReserve)", ErrSenderFunds, sender.Hex())
	}
	return nil
}

// SenderFunds checks, before anything is asked of an orchestrator, that
// this gateway's sender can pay at all: the same TicketBroker read and rule
// as Pay's (cached SenderCacheTTL). ErrSenderFunds when it cannot, ErrChain
// when the read failed; nil too when the gateway does not check funds
// (off chain, no Chain, or DepositMultiplier 0). A caller holding several
// senders uses it to skip the ones that cannot pay.
func (g *Gateway) SenderFunds(ctx context.Context) error {
	if !g.checksFunds() {
		return nil
	}
	info, err := g.senderInfo(ctx, g.Sender.Address())
	if err != nil {
		return err
	}
	return fundsErr(g.Sender.Address(), info)
}
