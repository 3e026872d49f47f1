package payment

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// BenchmarkSegmentCredentials is the on-chain gate's Check of one job's
// headers (payment decoded, segment credentials decoded and their
// signature verified against the payment's sender, auth token checked),
// as each job asks it twice or more; "recover" is the signature
// verification alone as every Check did it before it was remembered.
//
//	go test -run '^$' -bench SegmentCredentials ./orchestrator/payment/
func BenchmarkSegmentCredentials(b *testing.B) {
	r, g, gw := onChainGate(b)
	t2i, _ := capability.ByID(capability.TextToImage)
	job := orchestrator.Job{Pipeline: t2i, Model: "m"}
	sd, err := gateway.SegData(gw, t2i.ID, "m", r.AuthToken())
	if err != nil {
		b.Fatal(err)
	}
	req := jobRequest(b, gw.Address(), sd)
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := g.Check(req, job); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("recover", func(b *testing.B) {
		b.ReportAllocs()
		msg := gateway.SegDataMessage(sd)
		for range b.N {
			if err := pm.VerifyKeccak(gw.Address(), msg, sd.Sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// onChainGate is an on-chain receiver's gate and a gateway's signer.
func onChainGate(tb testing.TB) (*Receiver, *gate, *pm.Signer) {
	tb.Helper()
	orchKey, _ := crypto.GenerateKey()
	r, err := NewReceiver(Config{Chain: &movingChain{}, Signer: pm.NewSigner(orchKey)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	g := r.Gate(func(capability.Pipeline, string) *lpnet.PriceInfo {
		return &lpnet.PriceInfo{PricePerUnit: 0, PixelsPerUnit: 1}
	})
	gwKey, _ := crypto.GenerateKey()
	return r, g.(*gate), pm.NewSigner(gwKey)
}

// jobRequest is an AI job's request with the given sender in its payment and
// the given segment credentials.
func jobRequest(tb testing.TB, sender common.Address, sd *lpnet.SegData) *http.Request {
	tb.Helper()
	pay, err := pm.EncodeHeader(&lpnet.Payment{Sender: sender.Bytes(), ExpectedPrice: &lpnet.PriceInfo{PricePerUnit: 0, PixelsPerUnit: 1}})
	if err != nil {
		tb.Fatal(err)
	}
	seg, err := pm.EncodeHeader(sd)
	if err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/text-to-image", nil)
	req.Header.Set(gateway.PaymentHeader, pay)
	req.Header.Set(gateway.SegmentHeader, seg)
	return req
}
