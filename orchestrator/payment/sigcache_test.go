package payment

import (
	"math/big"
	"net/http"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"

	"google.golang.org/protobuf/proto"
)

// A gateway's segment credentials are the same bytes on every job of a
// model, so the sender is recovered from their signature once; and what
// was verified once never vouches for anything else: another sender, a
// changed signature or credentials for another model are verified in full
// and refused (403) as before.
func TestSegmentSignatureVerifiedOnce(t *testing.T) {
	r, g, gw := onChainGate(t)
	t2i, _ := capability.ByID(capability.TextToImage)
	job := orchestrator.Job{Pipeline: t2i, Model: "m"}
	sd, err := gateway.SegData(gw, t2i.ID, "m", r.AuthToken())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := g.Check(jobRequest(t, gw.Address(), sd), job); err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
	}
	if n := g.sigs.recovered.Load(); n != 1 {
		t.Errorf("50 jobs with the same credentials recovered the sender %d times, want 1", n)
	}

	otherKey, _ := crypto.GenerateKey()
	other := pm.NewSigner(otherKey)
	tampered := proto.Clone(sd).(*lpnet.SegData)
	tampered.Sig[5] ^= 1
	otherModel := proto.Clone(sd).(*lpnet.SegData)
	otherModel.ManifestId = []byte(gateway.ManifestID(t2i.ID, "other"))
	for _, c := range []struct {
		name   string
		sender common.Address
		sd     *lpnet.SegData
	}{
		{"another sender claiming the verified signature", other.Address(), sd},
		{"a changed signature", gw.Address(), tampered},
		{"the verified signature on another model's credentials", gw.Address(), otherModel},
	} {
		for range 2 { // a refusal is never remembered as a success
			_, err := g.Check(jobRequest(t, c.sender, c.sd), job)
			ref, ok := err.(*orchestrator.Refusal)
			if !ok || ref.Status != http.StatusForbidden {
				t.Errorf("%s: %v, want 403", c.name, err)
			}
		}
	}
}

// The set of verified signatures stays bounded whatever senders send.
func TestVerifiedSignaturesBounded(t *testing.T) {
	var v verifiedSigs
	key, _ := crypto.GenerateKey()
	s := pm.NewSigner(key)
	for i := range maxVerifiedSigs + 10 {
		msg := big.NewInt(int64(i)).Bytes()
		sig, err := s.SignKeccak(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.verifyKeccak(s.Address(), msg, sig); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if n := len(v.seen); n > maxVerifiedSigs {
		t.Errorf("%d signatures kept, want at most %d", n, maxVerifiedSigs)
	}
}
