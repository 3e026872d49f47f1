package payment

import (
	"testing"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
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
