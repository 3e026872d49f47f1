package payment

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

func TestAuthToken(t *testing.T) {
	r, err := NewReceiver(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tok := r.AuthToken()
	if err := r.VerifyAuthToken(tok); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	forged := proto.Clone(tok).(*lpnet.AuthToken)
	forged.SessionId = "someone-else"
	if err := r.VerifyAuthToken(forged); !errors.Is(err, ErrTokenForged) {
		t.Errorf("forged: %v", err)
	}
	if err := r.VerifyAuthToken(nil); !errors.Is(err, ErrNoToken) {
		t.Errorf("missing: %v", err)
	}
	other, _ := NewReceiver(Config{})
	defer other.Close()
	if err := other.VerifyAuthToken(tok); !errors.Is(err, ErrTokenForged) {
		t.Errorf("another orchestrator's token: %v", err)
	}
	expired, _ := NewReceiver(Config{TokenTTL: -time.Minute})
	defer expired.Close()
	if err := expired.VerifyAuthToken(expired.AuthToken()); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired: %v", err)
	}
}
