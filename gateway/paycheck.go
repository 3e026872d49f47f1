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
// orchestrator's fault, never the gateway's limits.
func checkTicketParams(tp *lpnet.TicketParams) error {
	switch {
	case len(tp.GetRecipient()) != common.AddressLength:
		return fmt.Errorf("%w: recipient is %d bytes, want 20", ErrBadTicketParams, len(tp.GetRecipient()))
	case len(tp.GetRecipientRandHash()) != common.HashLength:
		return fmt.Errorf("%w: recipient_rand_hash is %d bytes, want 32", ErrBadTicketParams, len(tp.GetRecipientRandHash()))
	case len(tp.GetFaceValue()) > 32 || len(tp.GetWinProb()) > 32 || len(tp.GetExpirationBlock()) > 32:
		return fmt.Errorf("%w: face_value, win_prob or expiration_block longer than 32 bytes", ErrBadTicketParams)
	case bigInt(tp.GetFaceValue()).Sign() == 0:
		return fmt.Errorf("%w: face value 0", ErrBadTicketParams)
	case bigInt(tp.GetWinProb()).Sign() == 0:
		return fmt.Errorf("%w: win probability 0", ErrBadTicketParams)
	}
	return nil
}

// paramsExpiring reports whether tp expires within one block of last: a
// ticket made from it may reach the orchestrator after it has expired.
func paramsExpiring(tp *lpnet.TicketParams, last *big.Int) bool {
	return bigInt(tp.GetExpirationBlock()).Cmp(new(big.Int).Add(last, big.NewInt(1))) <= 0
}

// checkTickets is go-livepeer's sender.validateTicketParams for n tickets
// of tp, run before anything is signed: params not about to expire, ticket
// EV ≤ MaxTicketEV, n × EV ≤ MaxTotalEV, face value ≤ deposit /
// DepositMultiplier with a usable deposit and reserve and no unlock pending.
func (g *Gateway) checkTickets(ctx context.Context, tp *lpnet.TicketParams, ev *big.Rat, n int) error {
	if g.Chain != nil {
		last, err := g.lastBlock(ctx)
		if err != nil {
			return err
		}
		if paramsExpiring(tp, last) {
			return fmt.Errorf("%w: expiration block %s, latest %s", ErrParamsExpired, bigInt(tp.GetExpirationBlock()), last)
		}
	}
	if g.MaxTicketEV != nil && g.MaxTicketEV.Sign() > 0 && ev.Cmp(g.MaxTicketEV) > 0 {
		return fmt.Errorf("%w: %s wei > maximum %s (-maxTicketEV)", ErrTicketEVTooHigh, ev.FloatString(0), g.MaxTicketEV.FloatString(0))
	}
	if total := new(big.Rat).Mul(ev, big.NewRat(int64(n), 1)); g.MaxTotalEV != nil && g.MaxTotalEV.Sign() > 0 && total.Cmp(g.MaxTotalEV) > 0 {
		return fmt.Errorf("%w: %d tickets × %s wei = %s > maximum %s (-maxTotalEV)", ErrTotalEVTooHigh, n, ev.FloatString(0),
			total.FloatString(0), g.MaxTotalEV.FloatString(0))
	}
	if g.Chain == nil || g.DepositMultiplier <= 0 {
		return nil
	}
	info, err := g.senderInfo(ctx, g.Sender.Address())
	if err != nil {
		return err
	}
	switch {
	case info.Deposit == nil || info.Deposit.Sign() <= 0:
		return fmt.Errorf("%w: deposit is 0 (fund it with fundDepositAndReserve)", ErrSenderFunds)
	case info.ReserveRemaining == nil || info.ReserveRemaining.Sign() <= 0:
		return fmt.Errorf("%w: reserve is 0 (fund it with fundDepositAndReserve)", ErrSenderFunds)
	case info.WithdrawRound != nil && info.WithdrawRound.Sign() != 0:
		return fmt.Errorf("%w: unlock pending, withdraw round %s", ErrSenderFunds, info.WithdrawRound)
	}
	maxFace := new(big.Int).Div(info.Deposit, big.NewInt(int64(g.DepositMultiplier)))
	if face := bigInt(tp.GetFaceValue()); face.Cmp(maxFace) > 0 {
		return fmt.Errorf("%w: %s wei > deposit %s / %d (-depositMultiplier)", ErrFaceValueTooHigh, face, info.Deposit, g.DepositMultiplier)
	}
	return nil
}
