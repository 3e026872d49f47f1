package identity_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lpgauge/lpgauge/tester/identity"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

// The proof is go-livepeer's Ping: only the holder of the claimed address's
// key can sign the tester's fresh challenge.
func TestProve(t *testing.T) {
	own := orchtest.New(t, orchtest.Behaviour{})
	other := orchtest.New(t, orchtest.Behaviour{})
	unsigned := orchtest.New(t, orchtest.Behaviour{Unsigned: true})
	ctx := context.Background()
	tests := []struct {
		name    string
		uri     string
		claimed string
		reason  string // "" = proven
	}{
		{"own address", own.URL, own.Address, ""},
		{"someone else's address", own.URL, other.Address, identity.ReasonOtherSigner},
		{"off-chain, no signature", unsigned.URL, unsigned.Address, identity.ReasonUnsigned},
		{"no Ping answer", "http://127.0.0.1:1", own.Address, identity.ReasonPingFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := identity.Prove(ctx, tt.uri, common.HexToAddress(tt.claimed))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("own address not proven: %v", err)
				}
				return
			}
			var ie *identity.Error
			if !errors.Is(err, identity.ErrUnproven) || !errors.As(err, &ie) || ie.Reason != tt.reason {
				t.Fatalf("err = %v, want unproven %s", err, tt.reason)
			}
		})
	}
}

// Check counts what it refuses, by reason, and hands back the zero address.
func TestCheckCounts(t *testing.T) {
	o := orchtest.New(t, orchtest.Behaviour{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	before := testutil.ToFloat64(identity.Unproven.WithLabelValues(identity.ReasonOtherSigner))
	if got := identity.Check(context.Background(), o.URL, common.HexToAddress(orchtest.RandomAddress()), log); got != (common.Address{}) {
		t.Errorf("unproven claim returned %s", got.Hex())
	}
	if d := testutil.ToFloat64(identity.Unproven.WithLabelValues(identity.ReasonOtherSigner)) - before; d != 1 {
		t.Errorf("counted %v, want 1", d)
	}
	if got := identity.Check(context.Background(), o.URL, common.HexToAddress(o.Address), log); got != common.HexToAddress(o.Address) {
		t.Errorf("proven claim returned %s", got.Hex())
	}
}
