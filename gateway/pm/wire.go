package pm

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

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
// Livepeer-Segment. Map entries (SegData's capability capacities) are
// written in key order, as in go-livepeer's vectors, so the same
// credentials are the same bytes every time.
func EncodeHeader(m proto.Message) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
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
// "PM session" per set of ticket params, go-livepeer's sender.StartSession
// keyed by RecipientRandHash.Hex(), pm/sender.go:73-82): 1, 2, 3, … across
// every payment made against the same params, starting again at 1 for new
// params, as the orchestrator rejects a reused nonce.
type Sender struct {
	signer *Signer
	mu     sync.Mutex
	nonces map[common.Hash]*nonceState
	now    func() time.Time
}

type nonceState struct {
	last uint32
	used time.Time
}

// Nonce bookkeeping bounds: params expire 40 blocks (about 8 minutes) after
// they are issued, so a PM session unused for an hour is dead and its
// counter can go once the map holds more than maxNonceSessions.
const (
	maxNonceSessions = 1024
	nonceSessionIdle = time.Hour
)

// NewSender creates a sender that signs with signer.
func NewSender(signer *Signer) *Sender {
	return &Sender{signer: signer, nonces: make(map[common.Hash]*nonceState), now: time.Now}
}

// Address is the sender's (gateway's) address.
func (s *Sender) Address() common.Address { return s.signer.Address() }

// Signer is the sender's signer.
func (s *Sender) Signer() *Signer { return s.signer }

// LastNonce is the last sender nonce used against recipientRandHash (0 when
// none was).
func (s *Sender) LastNonce(recipientRandHash common.Hash) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.nonces[recipientRandHash]; st != nil {
		return st.last
	}
	return 0
}

// reserve hands out n consecutive nonces of the PM session randHash.
func (s *Sender) reserve(randHash common.Hash, n int) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := s.nonces[randHash]
	if st == nil {
		if len(s.nonces) >= maxNonceSessions {
			for h, old := range s.nonces {
				if now.Sub(old.used) > nonceSessionIdle {
					delete(s.nonces, h)
				}
			}
		}
		st = &nonceState{}
		s.nonces[randHash] = st
	}
	first := st.last + 1
	st.last += uint32(n)
	st.used = now
	return first
}

// Payment builds the Livepeer-Payment a go-livepeer gateway sends with n
// tickets against the orchestrator's ticket params (server/segment_rpc.go
// genPayment, pm/sender.go CreateTicketBatch):
//   - sender (2) and expected_price (5, the advertised price_info echoed)
//     always; with n = 0 nothing else (the free-model / credit-covered
//     payment, conformance vector 05);
//   - ticket_params (1) as go-livepeer re-encodes them: recipient, face
//     value, win prob, recipient rand hash, seed, expiration block, each
//     through big.Int (minimal bytes), and without expiration_params;
//   - expiration_params (3) from the orchestrator's TicketParams field 7, the
//     only place the orchestrator reads them (core/orchestrator.go:164-167);
//   - one ticket_sender_params (4) per ticket: the next sender nonce and
//     EthSign(ticketHash) — personal-sign of the hash itself.
func (s *Sender) Payment(tp *lpnet.TicketParams, price *lpnet.PriceInfo, n int) (*lpnet.Payment, error) {
	p := &lpnet.Payment{
		Sender:        s.signer.Address().Bytes(),
		ExpectedPrice: price,
	}
	if n <= 0 {
		return p, nil
	}
	if tp == nil {
		return nil, ErrNoTicketParams
	}
	recipient := common.BytesToAddress(tp.GetRecipient())
	faceValue := new(big.Int).SetBytes(tp.GetFaceValue())
	winProb := new(big.Int).SetBytes(tp.GetWinProb())
	randHash := common.BytesToHash(tp.GetRecipientRandHash())
	ep := tp.GetExpirationParams()
	round, roundHash := ep.GetCreationRound(), common.BytesToHash(ep.GetCreationRoundBlockHash())
	p.TicketParams = &lpnet.TicketParams{
		Recipient:         recipient.Bytes(),
		FaceValue:         faceValue.Bytes(),
		WinProb:           winProb.Bytes(),
		RecipientRandHash: randHash.Bytes(),
		Seed:              new(big.Int).SetBytes(tp.GetSeed()).Bytes(),
		ExpirationBlock:   new(big.Int).SetBytes(tp.GetExpirationBlock()).Bytes(),
	}
	p.ExpirationParams = &lpnet.TicketExpirationParams{CreationRound: round, CreationRoundBlockHash: roundHash.Bytes()}
	first := s.reserve(randHash, n)
	p.TicketSenderParams = make([]*lpnet.TicketSenderParams, 0, n)
	for i := 0; i < n; i++ {
		nonce := first + uint32(i)
		t := &Ticket{
			Recipient:              recipient,
			Sender:                 s.signer.Address(),
			FaceValue:              faceValue,
			WinProb:                winProb,
			SenderNonce:            nonce,
			RecipientRandHash:      randHash,
			CreationRound:          round,
			CreationRoundBlockHash: roundHash,
		}
		sig, err := s.signer.Sign(t.Hash().Bytes())
		if err != nil {
			return nil, err
		}
		p.TicketSenderParams = append(p.TicketSenderParams, &lpnet.TicketSenderParams{SenderNonce: nonce, Sig: sig})
	}
	return p, nil
}

// MaxTickets bounds one payment: more tickets than an orchestrator accepts
// per set of params (go-livepeer's maxSenderNonces, 600) plus room, so an
// orchestrator whose ticket EV is tiny against its price cannot make the
// gateway sign without limit.
const MaxTickets = 1000

// TicketCount is go-livepeer's Balance.StageUpdate for one job
// (core/accounting.go:41-66, called from server/segment_rpc.go
// newBalanceUpdate): the gateway wants credit of at least max(fee, ev) (the
// orchestrator requires a balance of one ticket's EV) and pays
// ⌈(max(fee, ev) − credit)/ev⌉ tickets, none when its credit already covers
// that or when the ticket EV is 0 (a free model: face value and win
// probability 0). The count is capped at MaxTickets.
func TicketCount(fee, credit, ev *big.Rat) int {
	if ev == nil || ev.Sign() <= 0 {
		return 0
	}
	minCredit := fee
	if minCredit == nil || ev.Cmp(minCredit) > 0 {
		minCredit = ev
	}
	if credit == nil {
		credit = new(big.Rat)
	}
	if credit.Cmp(minCredit) >= 0 {
		return 0
	}
	q := new(big.Rat).Quo(new(big.Rat).Sub(minCredit, credit), ev)
	n := new(big.Int).Quo(q.Num(), q.Denom())
	if !q.IsInt() {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() || n.Int64() > MaxTickets {
		return MaxTickets
	}
	return int(n.Int64())
}

// TicketsFor is TicketCount with no credit.
func TicketsFor(fee, ev *big.Rat) int { return TicketCount(fee, nil, ev) }

// Fee is units × pricePerUnit / pixelsPerUnit in wei.
func Fee(price *lpnet.PriceInfo, units int64) *big.Rat {
	if price.GetPricePerUnit() <= 0 || price.GetPixelsPerUnit() <= 0 {
		return new(big.Rat)
	}
	r := big.NewRat(price.GetPricePerUnit(), price.GetPixelsPerUnit())
	return r.Mul(r, new(big.Rat).SetInt64(units))
}
