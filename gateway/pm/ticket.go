// Package pm is Livepeer's probabilistic micropayment arithmetic, shared by
// the tester (which pays) and the reference orchestrator (which is paid):
// ticket hashing exactly as go-livepeer and the TicketBroker contract do it,
// Ethereum personal-sign signatures, recipient rand commitments, the win
// check, and expected value.
package pm

import (
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// MaxWinProb is 2^256-1: a ticket's win_prob is a numerator over it.
var MaxWinProb = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

// Ticket is one lottery ticket as the TicketBroker hashes it.
type Ticket struct {
	Recipient              common.Address
	Sender                 common.Address
	FaceValue              *big.Int
	WinProb                *big.Int
	SenderNonce            uint32
	RecipientRandHash      common.Hash
	CreationRound          int64
	CreationRoundBlockHash common.Hash
}

// AuxData is creationRound (32 bytes) ‖ creationRoundBlockHash, or empty when
// both are zero — the contract's and go-livepeer's encoding.
func (t *Ticket) AuxData() []byte {
	if t.CreationRound == 0 && t.CreationRoundBlockHash == (common.Hash{}) {
		return []byte{}
	}
	return append(common.LeftPadBytes(big.NewInt(t.CreationRound).Bytes(), 32), t.CreationRoundBlockHash.Bytes()...)
}

// Hash is keccak256 over the Solidity tight packing
// recipient ‖ sender ‖ faceValue ‖ winProb ‖ senderNonce ‖ recipientRandHash ‖ auxData.
func (t *Ticket) Hash() common.Hash {
	buf := make([]byte, 0, 20+20+32*4+64)
	buf = append(buf, t.Recipient.Bytes()...)
	buf = append(buf, t.Sender.Bytes()...)
	buf = append(buf, word(t.FaceValue)...)
	buf = append(buf, word(t.WinProb)...)
	buf = append(buf, word(new(big.Int).SetUint64(uint64(t.SenderNonce)))...)
	buf = append(buf, t.RecipientRandHash.Bytes()...)
	buf = append(buf, t.AuxData()...)
	return crypto.Keccak256Hash(buf)
}

// EV is the ticket's expected value in wei: faceValue × winProb / (2^256-1).
func (t *Ticket) EV() *big.Rat { return EV(t.FaceValue, t.WinProb) }

// EV is faceValue × winProb / (2^256-1).
func EV(faceValue, winProb *big.Int) *big.Rat {
	if faceValue == nil || winProb == nil {
		return new(big.Rat)
	}
	return new(big.Rat).Mul(new(big.Rat).SetInt(faceValue), new(big.Rat).SetFrac(winProb, MaxWinProb))
}

// RandHash is the commitment keccak256(rand left-padded to 32 bytes) that the
// recipient advertises as recipient_rand_hash.
func RandHash(rand *big.Int) common.Hash {
	return crypto.Keccak256Hash(word(rand))
}

// IsWinning reports keccak256(sig ‖ recipientRand) < winProb, the
// TicketBroker's win rule. It does not check the ticket is valid.
func IsWinning(sig []byte, recipientRand, winProb *big.Int) bool {
	h := new(big.Int).SetBytes(crypto.Keccak256(sig, word(recipientRand)))
	return h.Cmp(winProb) < 0
}

func word(x *big.Int) []byte {
	if x == nil {
		return make([]byte, 32)
	}
	return common.LeftPadBytes(x.Bytes(), 32)
}
