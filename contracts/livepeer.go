package contracts

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Ticket is the TicketBroker's Ticket tuple.
type Ticket struct {
	Recipient         common.Address
	Sender            common.Address
	FaceValue         *big.Int
	WinProb           *big.Int
	SenderNonce       *big.Int
	RecipientRandHash [32]byte
	AuxData           []byte
}

// SenderInfo is TicketBroker.getSenderInfo flattened.
type SenderInfo struct {
	Deposit, WithdrawRound, ReserveRemaining *big.Int
}

// RegisterTranscoder puts t in the test BondingManager's pool (owner only).
func (l *Livepeer) RegisterTranscoder(ctx context.Context, owner *ecdsa.PrivateKey, t common.Address, stake *big.Int) error {
	tx, err := l.BondingManager.Transact(ctx, l.Opts(owner), "register", t, stake, big.NewInt(0), big.NewInt(0), big.NewInt(0), big.NewInt(0))
	if err != nil {
		return err
	}
	return l.Wait(ctx, tx)
}

// SetServiceURI registers key's service URI.
func (l *Livepeer) SetServiceURI(ctx context.Context, key *ecdsa.PrivateKey, uri string) error {
	tx, err := l.ServiceRegistry.Transact(ctx, l.Opts(key), "setServiceURI", uri)
	if err != nil {
		return err
	}
	return l.Wait(ctx, tx)
}

// InitializeRound starts the next round.
func (l *Livepeer) InitializeRound(ctx context.Context, key *ecdsa.PrivateKey) error {
	tx, err := l.RoundsManager.Transact(ctx, l.Opts(key), "initializeRound")
	if err != nil {
		return err
	}
	return l.Wait(ctx, tx)
}

// FundDepositAndReserve funds key's sender account on the TicketBroker.
func (l *Livepeer) FundDepositAndReserve(ctx context.Context, key *ecdsa.PrivateKey, deposit, reserve *big.Int) error {
	opts := l.Opts(key)
	opts.Value = new(big.Int).Add(deposit, reserve)
	tx, err := l.TicketBroker.Transact(ctx, opts, "fundDepositAndReserve", deposit, reserve)
	if err != nil {
		return err
	}
	return l.Wait(ctx, tx)
}

// SenderInfo reads a sender's deposit and reserve.
func (l *Livepeer) SenderInfo(ctx context.Context, sender common.Address) (SenderInfo, error) {
	out, err := l.TicketBroker.Call(ctx, "getSenderInfo", sender)
	if err != nil {
		return SenderInfo{}, err
	}
	s, ok1 := out[0].(struct {
		Deposit       *big.Int `json:"deposit"`
		WithdrawRound *big.Int `json:"withdrawRound"`
	})
	r, ok2 := out[1].(struct {
		FundsRemaining        *big.Int `json:"fundsRemaining"`
		ClaimedInCurrentRound *big.Int `json:"claimedInCurrentRound"`
	})
	if !ok1 || !ok2 {
		return SenderInfo{}, fmt.Errorf("getSenderInfo: unexpected output %T %T", out[0], out[1])
	}
	return SenderInfo{Deposit: s.Deposit, WithdrawRound: s.WithdrawRound, ReserveRemaining: r.FundsRemaining}, nil
}

// CurrentRound is the RoundsManager's round and its block hash.
func (l *Livepeer) CurrentRound(ctx context.Context) (*big.Int, common.Hash, error) {
	out, err := l.RoundsManager.Call(ctx, "currentRound")
	if err != nil {
		return nil, common.Hash{}, err
	}
	round := out[0].(*big.Int)
	out, err = l.RoundsManager.Call(ctx, "blockHashForRound", round)
	if err != nil {
		return nil, common.Hash{}, err
	}
	return round, common.Hash(out[0].([32]byte)), nil
}

// RedeemWinningTicket submits a winning ticket; it does not wait for mining.
func (l *Livepeer) RedeemWinningTicket(ctx context.Context, key *ecdsa.PrivateKey, t Ticket, sig []byte, recipientRand *big.Int) (*types.Transaction, error) {
	return l.TicketBroker.Transact(ctx, l.Opts(key), "redeemWinningTicket", t, sig, recipientRand)
}

// ServiceURI reads addr's URI from the service registry.
func (l *Livepeer) ServiceURI(ctx context.Context, addr common.Address) (string, error) {
	out, err := l.ServiceRegistry.Call(ctx, "getServiceURI", addr)
	if err != nil {
		return "", err
	}
	return out[0].(string), nil
}
