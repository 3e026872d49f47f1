package payment

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/gateway/pm"
)

// maxRedeemAttempts is how many failed redemptions a stored ticket gets
// before it is set aside in failed/ for the operator (a ticket the broker
// rejects, e.g. already redeemed or expired, would fail forever).
const maxRedeemAttempts = 5

// TicketStore keeps winning tickets on disk from the moment they win until
// the TicketBroker has redeemed them: one file per ticket, written and
// synced before the ticket is queued, removed once redeemed. A receiver
// with a store submits what it finds there at start, so a shutdown or crash
// with tickets queued, or a redemption that failed, loses no winnings.
type TicketStore struct {
	dir string

	mu       sync.Mutex
	inFlight map[string]bool // file names queued or being submitted
}

// OpenTicketStore opens (creating) the store in dir.
func OpenTicketStore(dir string) (*TicketStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "failed"), 0o700); err != nil {
		return nil, fmt.Errorf("ticket store: %w", err)
	}
	return &TicketStore{dir: dir, inFlight: map[string]bool{}}, nil
}

// storedTicket is a winner on disk: the ticket, its signature and the
// recipient rand, everything redeemWinningTicket takes.
type storedTicket struct {
	Recipient              common.Address `json:"recipient"`
	Sender                 common.Address `json:"sender"`
	FaceValue              string         `json:"face_value"`
	WinProb                string         `json:"win_prob"`
	SenderNonce            uint32         `json:"sender_nonce"`
	RecipientRandHash      common.Hash    `json:"recipient_rand_hash"`
	CreationRound          int64          `json:"creation_round"`
	CreationRoundBlockHash common.Hash    `json:"creation_round_block_hash"`
	Sig                    string         `json:"sig"`
	RecipientRand          string         `json:"recipient_rand"`
	Attempts               int            `json:"attempts"`
}

func fileName(w winner) string { return w.t.Hash().Hex()[2:] + ".json" }

func encodeWinner(w winner) storedTicket {
	return storedTicket{
		Recipient: w.t.Recipient, Sender: w.t.Sender, FaceValue: w.t.FaceValue.String(), WinProb: w.t.WinProb.String(),
		SenderNonce: w.t.SenderNonce, RecipientRandHash: w.t.RecipientRandHash, CreationRound: w.t.CreationRound,
		CreationRoundBlockHash: w.t.CreationRoundBlockHash, Sig: hex.EncodeToString(w.sig), RecipientRand: w.rand.String(),
		Attempts: w.attempts,
	}
}

func decodeWinner(st storedTicket) (winner, error) {
	face, ok1 := new(big.Int).SetString(st.FaceValue, 10)
	prob, ok2 := new(big.Int).SetString(st.WinProb, 10)
	rand, ok3 := new(big.Int).SetString(st.RecipientRand, 10)
	sig, err := hex.DecodeString(st.Sig)
	if !ok1 || !ok2 || !ok3 || err != nil {
		return winner{}, errors.New("malformed stored ticket")
	}
	return winner{t: &pm.Ticket{
		Recipient: st.Recipient, Sender: st.Sender, FaceValue: face, WinProb: prob, SenderNonce: st.SenderNonce,
		RecipientRandHash: st.RecipientRandHash, CreationRound: st.CreationRound, CreationRoundBlockHash: st.CreationRoundBlockHash,
	}, sig: sig, rand: rand, attempts: st.Attempts}, nil
}

// write stores w atomically: a temporary file synced, renamed over the
// ticket's name, and the directory synced, so a crash leaves either the
// whole ticket or none.
func (s *TicketStore) write(w winner) error {
	b, err := json.Marshal(encodeWinner(w))
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".ticket-*")
	if err != nil {
		return fmt.Errorf("ticket store: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.dir, fileName(w)))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("ticket store: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// claim marks a stored ticket queued; false when it already is.
func (s *TicketStore) claim(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[name] {
		return false
	}
	s.inFlight[name] = true
	return true
}

func (s *TicketStore) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inFlight, name)
}

// unclaimed returns the stored tickets not queued now, and claims them.
func (s *TicketStore) unclaimed() ([]winner, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("ticket store: %w", err)
	}
	var out []winner
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") || !s.claim(name) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		var st storedTicket
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		w, derr := decodeWinner(st)
		if err != nil || derr != nil {
			s.release(name)
			_ = os.Rename(filepath.Join(s.dir, name), filepath.Join(s.dir, "failed", name))
			continue
		}
		out = append(out, w)
	}
	return out, nil
}

// settle records a redemption attempt: the file goes when redeemed; a
// failure is counted (cancelled ones are not) and the ticket retried later,
// or set aside after maxRedeemAttempts.
func (s *TicketStore) settle(w winner, err error, cancelled bool) error {
	name := fileName(w)
	defer s.release(name)
	path := filepath.Join(s.dir, name)
	switch {
	case err == nil:
		return os.Remove(path)
	case cancelled:
		return nil
	}
	w.attempts++
	if w.attempts >= maxRedeemAttempts {
		return os.Rename(path, filepath.Join(s.dir, "failed", name))
	}
	return s.write(w)
}

// ticketRescan is how often stored tickets not queued (a full queue, a
// failed redemption) are queued again.
const ticketRescan = time.Minute

// queueWinner stores a winning ticket (with a store) and queues it for
// redemption. With a store a full queue loses nothing: the ticket waits on
// disk for the next rescan.
func (r *Receiver) queueWinner(w winner) {
	st := r.cfg.Tickets
	stored := false
	if st != nil {
		if err := st.write(w); err != nil {
			r.cfg.Log.Error("winning ticket not stored: it is redeemed only if this process lives to submit it", "sender", w.t.Sender.Hex(), "err", err)
		} else {
			stored = st.claim(fileName(w))
			if !stored {
				return // the same ticket is already queued
			}
		}
	}
	r.redeemed.Add(1)
	select {
	case r.redeem <- w:
	default:
		r.redeemed.Done()
		if stored {
			st.release(fileName(w))
			r.cfg.Log.Warn("redemption queue full; winning ticket kept on disk for the next rescan", "sender", w.t.Sender.Hex())
			return
		}
		r.cfg.Log.Warn("redemption queue full; winning ticket dropped", "sender", w.t.Sender.Hex())
	}
}

// storeLoop queues the stored tickets at start (those a previous process
// left) and every ticketRescan (those a full queue or a failure left).
func (r *Receiver) storeLoop(ctx context.Context) {
	defer r.wg.Done()
	tick := time.NewTicker(ticketRescan)
	defer tick.Stop()
	for {
		ws, err := r.cfg.Tickets.unclaimed()
		if err != nil {
			r.cfg.Log.Error("stored winning tickets unreadable", "err", err)
		}
		if len(ws) > 0 {
			r.cfg.Log.Info("submitting stored winning tickets", "count", len(ws))
		}
		for _, w := range ws {
			r.redeemed.Add(1)
			select {
			case r.redeem <- w:
			case <-ctx.Done():
				r.redeemed.Done()
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// settled records a redemption's outcome in the store, if any.
func (r *Receiver) settled(ctx context.Context, w winner, err error) {
	if r.cfg.Tickets == nil {
		return
	}
	if serr := r.cfg.Tickets.settle(w, err, ctx.Err() != nil); serr != nil {
		r.cfg.Log.Error("ticket store: recording a redemption", "sender", w.t.Sender.Hex(), "err", serr)
	}
}
