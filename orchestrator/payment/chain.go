package payment

import (
	"context"
	"crypto/ecdsa"
	"math/big"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway/pm"
)

// ContractChain is the Chain backed by the Livepeer contracts; key pays for
// redemption transactions (the orchestrator's own key).
type ContractChain struct {
	L   *contracts.Livepeer
	Key *ecdsa.PrivateKey
}

// BlockNumber implements Chain.
func (c ContractChain) BlockNumber(ctx context.Context) (uint64, error) {
	return c.L.Backend.BlockNumber(ctx)
}

// CurrentRound implements Chain.
func (c ContractChain) CurrentRound(ctx context.Context) (int64, common.Hash, error) {
	r, h, err := c.L.CurrentRound(ctx)
	if err != nil {
		return 0, common.Hash{}, err
	}
	return r.Int64(), h, nil
}

// Sender implements Chain.
func (c ContractChain) Sender(ctx context.Context, addr common.Address) (SenderInfo, error) {
	s, err := c.L.SenderInfo(ctx, addr)
	if err != nil {
		return SenderInfo{}, err
	}
	return SenderInfo{Deposit: s.Deposit, Reserve: s.ReserveRemaining, WithdrawRound: s.WithdrawRound}, nil
}

// Redeem implements Chain: it submits and waits for the receipt, so a
// revert is reported.
func (c ContractChain) Redeem(ctx context.Context, t *pm.Ticket, sig []byte, rand *big.Int) error {
	tx, err := c.L.RedeemWinningTicket(ctx, c.Key, contracts.Ticket{
		Recipient: t.Recipient, Sender: t.Sender, FaceValue: t.FaceValue, WinProb: t.WinProb,
		SenderNonce: new(big.Int).SetUint64(uint64(t.SenderNonce)), RecipientRandHash: t.RecipientRandHash,
		AuxData: t.AuxData(),
	}, sig, rand)
	if err != nil {
		return err
	}
	return c.L.Wait(ctx, tx)
}
