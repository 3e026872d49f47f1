package pm

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Signature errors; a caller answers all of them as "bad signature" but tests
// and logs can tell them apart.
var (
	ErrSigLength = errors.New("invalid signature length")
	ErrSigHighS  = errors.New("signature s value too high")
	ErrSigV      = errors.New("signature v value must be 27 or 28")
	ErrSigSigner = errors.New("signature not made by the claimed address")
)

var secp256k1HalfN = new(big.Int).Rsh(crypto.S256().Params().N, 1)

// Signer signs like a go-livepeer node's account manager: Ethereum
// personal-sign ("\x19Ethereum Signed Message:\n" + len prefix) with V = 27/28.
type Signer struct {
	key  *ecdsa.PrivateKey
	addr common.Address
}

// NewSigner wraps a private key.
func NewSigner(key *ecdsa.PrivateKey) *Signer {
	return &Signer{key: key, addr: crypto.PubkeyToAddress(key.PublicKey)}
}

// Address is the signer's Ethereum address.
func (s *Signer) Address() common.Address { return s.addr }

// Key is the private key, for transacting on chain.
func (s *Signer) Key() *ecdsa.PrivateKey { return s.key }

// Sign personal-signs msg: 65 bytes R ‖ S ‖ V with V = 27 or 28. Ticket
// signatures are Sign(ticket.Hash()).
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	sig, err := crypto.Sign(accounts.TextHash(msg), s.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sig[64] += 27
	return sig, nil
}

// SignKeccak is go-livepeer's broadcaster Sign: keccak256 the message, then
// personal-sign the hash. Used for OrchestratorRequest.sig (over the
// checksummed address string) and SegData.sig.
func (s *Signer) SignKeccak(msg []byte) ([]byte, error) {
	return s.Sign(crypto.Keccak256(msg))
}

// Recover returns the address that personal-signed msg, enforcing low S and
// V = 27/28 as go-livepeer does.
func Recover(msg, sig []byte) (common.Address, error) {
	if len(sig) != 65 {
		return common.Address{}, ErrSigLength
	}
	if new(big.Int).SetBytes(sig[32:64]).Cmp(secp256k1HalfN) > 0 {
		return common.Address{}, ErrSigHighS
	}
	if sig[64] != 27 && sig[64] != 28 {
		return common.Address{}, ErrSigV
	}
	s := make([]byte, 65)
	copy(s, sig)
	s[64] -= 27
	pub, err := crypto.SigToPub(accounts.TextHash(msg), s)
	if err != nil {
		return common.Address{}, fmt.Errorf("recover signer: %w", err)
	}
	return crypto.PubkeyToAddress(*pub), nil
}

// Verify checks that addr personal-signed msg.
func Verify(addr common.Address, msg, sig []byte) error {
	got, err := Recover(msg, sig)
	if err != nil {
		return err
	}
	if got != addr {
		return fmt.Errorf("%w: want %s, got %s", ErrSigSigner, addr.Hex(), got.Hex())
	}
	return nil
}

// VerifyKeccak checks a SignKeccak signature.
func VerifyKeccak(addr common.Address, msg, sig []byte) error {
	return Verify(addr, crypto.Keccak256(msg), sig)
}
