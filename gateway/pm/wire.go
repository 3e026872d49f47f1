package pm

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// ErrNoTicketParams means the orchestrator advertised no ticket params, so
// it cannot be paid with tickets (it runs off-chain or free).
var ErrNoTicketParams = errors.New("orchestrator sent no ticket params")

// MaxHeaderBytes bounds a decoded Livepeer-Payment / Livepeer-Segment header
// so a hostile peer cannot make us allocate without limit.
const MaxHeaderBytes = 64 << 10

// EncodeHeader is base64(protobuf), the form of Livepeer-Payment and
// Livepeer-Segment.
func EncodeHeader(m proto.Message) (string, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode header: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodeHeader parses a base64(protobuf) header into m.
func DecodeHeader(h string, m proto.Message) error {
	if len(h) > base64.StdEncoding.EncodedLen(MaxHeaderBytes) {
		return fmt.Errorf("header is %d bytes, limit %d", len(h), base64.StdEncoding.EncodedLen(MaxHeaderBytes))
	}
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return fmt.Errorf("header is not base64: %w", err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("header is not a protobuf %T: %w", m, err)
	}
	return nil
}

// Tickets expands a Payment into its tickets and their signatures.
func Tickets(p *lpnet.Payment) ([]*Ticket, [][]byte, error) {
	tp := p.GetTicketParams()
	if tp == nil {
		return nil, nil, ErrNoTicketParams
	}
	if len(p.GetSender()) != common.AddressLength || len(tp.GetRecipient()) != common.AddressLength {
		return nil, nil, errors.New("payment sender or recipient is not a 20-byte address")
	}
	if len(tp.GetRecipientRandHash()) != common.HashLength {
		return nil, nil, errors.New("recipient_rand_hash is not 32 bytes")
	}
	if len(tp.GetFaceValue()) > 32 || len(tp.GetWinProb()) > 32 {
		return nil, nil, errors.New("face_value or win_prob longer than 32 bytes")
	}
	ep := p.GetExpirationParams()
	if ep == nil {
		ep = tp.GetExpirationParams()
	}
	var tickets []*Ticket
	var sigs [][]byte
	for _, sp := range p.GetTicketSenderParams() {
		tickets = append(tickets, &Ticket{
			Recipient:              common.BytesToAddress(tp.GetRecipient()),
			Sender:                 common.BytesToAddress(p.GetSender()),
			FaceValue:              new(big.Int).SetBytes(tp.GetFaceValue()),
			WinProb:                new(big.Int).SetBytes(tp.GetWinProb()),
			SenderNonce:            sp.GetSenderNonce(),
			RecipientRandHash:      common.BytesToHash(tp.GetRecipientRandHash()),
			CreationRound:          ep.GetCreationRound(),
			CreationRoundBlockHash: common.BytesToHash(ep.GetCreationRoundBlockHash()),
		})
		sigs = append(sigs, sp.GetSig())
	}
	return tickets, sigs, nil
}

// Sender creates signed tickets. Nonces are per recipient_rand_hash (one
// "PM session" per set of ticket params), strictly increasing, as the
// orchestrator rejects a reused nonce.
type Sender struct {
	signer *Signer
	mu     sync.Mutex
	nonces map[common.Hash]uint32
}

// NewSender creates a sender that signs with signer.
func NewSender(signer *Signer) *Sender {
	return &Sender{signer: signer, nonces: make(map[common.Hash]uint32)}
}

// Address is the sender's (gateway's) address.
func (s *Sender) Address() common.Address { return s.signer.Address() }

// Signer is the sender's signer.
func (s *Sender) Signer() *Signer { return s.signer }

// Payment builds a Payment with n tickets against the orchestrator's ticket
// params, carrying the price the gateway saw.
func (s *Sender) Payment(tp *lpnet.TicketParams, price *lpnet.PriceInfo, n int) (*lpnet.Payment, error) {
	if tp == nil {
		return nil, ErrNoTicketParams
	}
	p := &lpnet.Payment{
		TicketParams:     tp,
		Sender:           s.signer.Address().Bytes(),
		ExpirationParams: tp.GetExpirationParams(),
		ExpectedPrice:    price,
	}
	randHash := common.BytesToHash(tp.GetRecipientRandHash())
	for i := 0; i < n; i++ {
		s.mu.Lock()
		s.nonces[randHash]++
		nonce := s.nonces[randHash]
		s.mu.Unlock()
		ep := tp.GetExpirationParams()
		t := &Ticket{
			Recipient:              common.BytesToAddress(tp.GetRecipient()),
			Sender:                 s.signer.Address(),
			FaceValue:              new(big.Int).SetBytes(tp.GetFaceValue()),
			WinProb:                new(big.Int).SetBytes(tp.GetWinProb()),
			SenderNonce:            nonce,
			RecipientRandHash:      randHash,
			CreationRound:          ep.GetCreationRound(),
			CreationRoundBlockHash: common.BytesToHash(ep.GetCreationRoundBlockHash()),
		}
		h := t.Hash()
		sig, err := s.signer.Sign(h.Bytes())
		if err != nil {
			return nil, err
		}
		p.TicketSenderParams = append(p.TicketSenderParams, &lpnet.TicketSenderParams{SenderNonce: nonce, Sig: sig})
	}
	return p, nil
}

// TicketsFor is how many tickets of expected value ev cover fee: at least
// one, as go-livepeer's gateway always sends one ticket with a paid job.
func TicketsFor(fee, ev *big.Rat) int {
	if ev.Sign() <= 0 {
		return 0
	}
	q := new(big.Rat).Quo(fee, ev)
	n := new(big.Int).Quo(q.Num(), q.Denom())
	if new(big.Rat).SetInt(n).Cmp(q) < 0 {
		n.Add(n, big.NewInt(1))
	}
	if n.Sign() <= 0 {
		return 1
	}
	if !n.IsInt64() || n.Int64() > 1000 {
		return 1000
	}
	return int(n.Int64())
}

// Fee is units × pricePerUnit / pixelsPerUnit in wei.
func Fee(price *lpnet.PriceInfo, units int64) *big.Rat {
	if price.GetPricePerUnit() <= 0 || price.GetPixelsPerUnit() <= 0 {
		return new(big.Rat)
	}
	r := big.NewRat(price.GetPricePerUnit(), price.GetPixelsPerUnit())
	return r.Mul(r, new(big.Rat).SetInt64(units))
}
