package payment

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Payment and segment headers over pm.MaxHeaderBytes are refused by their
// length, even when they are well-formed messages: 402 and 403.
func TestAbuseOversizedPaymentAndSegmentHeaders(t *testing.T) {
	r, err := NewReceiver(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g := r.Gate(func(capability.Pipeline, string) *lpnet.PriceInfo { return nil })
	t2i, _ := capability.ByID(capability.TextToImage)
	huge, _ := pm.EncodeHeader(&lpnet.Payment{Sender: make([]byte, pm.MaxHeaderBytes)})
	hugeSeg, _ := pm.EncodeHeader(&lpnet.SegData{ManifestId: make([]byte, pm.MaxHeaderBytes), AuthToken: r.AuthToken()})
	sd, _ := gateway.SegData(nil, t2i.ID, "m", r.AuthToken())
	seg, _ := pm.EncodeHeader(sd)
	for _, c := range []struct {
		name, payment, segment string
		status                 int
	}{
		{"payment", huge, seg, http.StatusPaymentRequired},
		{"segment", "", hugeSeg, http.StatusForbidden},
		{"garbage payment", strings.Repeat("A", 1<<20), seg, http.StatusPaymentRequired},
	} {
		req := httptest.NewRequest(http.MethodPost, "/text-to-image", nil)
		if c.payment != "" {
			req.Header.Set(gateway.PaymentHeader, c.payment)
		}
		req.Header.Set(gateway.SegmentHeader, c.segment)
		_, err := g.Check(req, orchestrator.Job{Pipeline: t2i, Model: "m"})
		ref, ok := err.(*orchestrator.Refusal)
		if !ok || ref.Status != c.status || !strings.Contains(ref.Message, "limit") {
			t.Errorf("%s: %v, want %d naming the limit", c.name, err, c.status)
		}
	}
}
