package payment

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/gateway/pm"
)

func testWinner(nonce uint32) winner {
	return winner{t: &pm.Ticket{
		Recipient: common.HexToAddress("0x01"), Sender: common.HexToAddress("0x02"), FaceValue: big.NewInt(1e15),
		WinProb: new(big.Int).Set(pm.MaxWinProb), SenderNonce: nonce, RecipientRandHash: common.HexToHash("0x03"),
		CreationRound: 7, CreationRoundBlockHash: common.HexToHash("0x04"),
	}, sig: []byte{1, 2, 3}, rand: big.NewInt(42)}
}

// A stored ticket comes back whole, is queued once at a time, is retried
// after a failure (a cancelled attempt is not counted), set aside after
// maxRedeemAttempts failures, and gone once redeemed; an unreadable file is
// set aside, never retried.
func TestTicketStoreLifecycle(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenTicketStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := testWinner(5)
	if err := st.write(w); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := st.unclaimed()
	if err != nil || len(got) != 1 {
		t.Fatalf("unclaimed: %d tickets, %v", len(got), err)
	}
	if got[0].t.Hash() != w.t.Hash() || string(got[0].sig) != string(w.sig) || got[0].rand.Cmp(w.rand) != 0 {
		t.Fatalf("stored ticket came back changed: %+v", got[0].t)
	}
	if _, err := os.Stat(filepath.Join(dir, "failed", "garbage.json")); err != nil {
		t.Errorf("unreadable ticket file not set aside: %v", err)
	}
	if again, _ := st.unclaimed(); len(again) != 0 {
		t.Fatalf("a queued ticket was handed out twice")
	}
	w = got[0]
	if err := st.settle(w, errors.New("context canceled"), true); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < maxRedeemAttempts; i++ {
		got, _ = st.unclaimed()
		if len(got) != 1 || got[0].attempts != i-1 {
			t.Fatalf("attempt %d: %d tickets, attempts %v", i, len(got), got)
		}
		if err := st.settle(got[0], errors.New("reverted"), false); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = st.unclaimed()
	if len(got) != 1 {
		t.Fatalf("after %d failures: %d tickets", maxRedeemAttempts-1, len(got))
	}
	if err := st.settle(got[0], errors.New("reverted"), false); err != nil {
		t.Fatal(err)
	}
	if left, _ := st.unclaimed(); len(left) != 0 {
		t.Errorf("a ticket that failed %d times is still retried", maxRedeemAttempts)
	}
	if _, err := os.Stat(filepath.Join(dir, "failed", fileName(w))); err != nil {
		t.Errorf("ticket not set aside after %d failures: %v", maxRedeemAttempts, err)
	}

	w2 := testWinner(6)
	if err := st.write(w2); err != nil {
		t.Fatal(err)
	}
	got, _ = st.unclaimed()
	if len(got) != 1 {
		t.Fatalf("second ticket: %d", len(got))
	}
	if err := st.settle(got[0], nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, fileName(w2))); !os.IsNotExist(err) {
		t.Errorf("redeemed ticket still on disk: %v", err)
	}
}
