package preparer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// startOffChain serves GetOrchestrator over h2c (plain http URI) with one
// warm text-to-image model.
func startOffChain(t *testing.T) string {
	t.Helper()
	t2i, _ := capability.ByID(capability.TextToImage)
	return startOffChainWith(t, orchestrator.ModelState{Pipeline: t2i, Model: "m", Warm: true, Capacity: 1})
}

// startOffChainWith serves GetOrchestrator over h2c with the given models.
func startOffChainWith(t *testing.T, models ...orchestrator.ModelState) string {
	t.Helper()
	recv, err := payment.NewReceiver(payment.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uri := "http://" + ln.Addr().String()
	rpc := &lprpc.Server{URI: uri, Receiver: recv, States: func() []orchestrator.ModelState { return models }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lprpc.Serve(ctx, ln, lprpc.NewGRPC(rpc), http.NotFoundHandler(), nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return uri
}

func TestPrepareOffChainOverH2C(t *testing.T) {
	uri := startOffChain(t)
	t2i, _ := capability.ByID(capability.TextToImage)
	p := Preparer{Gateway: &gateway.Gateway{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	prep, err := p.Prepare(ctx, probe.PrepareJob{ServiceURI: uri, Pipeline: t2i, Model: "m", Units: 512 * 512})
	if err != nil {
		t.Fatal(err)
	}
	if prep.Discovery <= 0 || !prep.Warm {
		t.Errorf("discovery %v warm %v", prep.Discovery, prep.Warm)
	}
	if prep.Header.Get(gateway.PaymentHeader) != "" {
		t.Error("off-chain must not send a payment")
	}
	var sd lpnet.SegData
	if err := pm.DecodeHeader(prep.Header.Get(gateway.SegmentHeader), &sd); err != nil {
		t.Fatal(err)
	}
	if string(sd.GetManifestId()) != "27_m" || string(sd.GetProfiles()) != "invalid" || len(sd.GetAuthToken().GetToken()) == 0 {
		t.Errorf("segment credentials %v", &sd)
	}
	if prep.Header.Get("Authorization") != gateway.AuthorizationValue {
		t.Error("missing AI worker marker")
	}

	// A model the orchestrator does not serve is a discovery failure.
	_, err = p.Prepare(ctx, probe.PrepareJob{ServiceURI: uri, Pipeline: t2i, Model: "other", Units: 1})
	if !errors.Is(err, probe.ErrDiscovery) {
		t.Errorf("unserved model: %v", err)
	}
	// Nobody listening: discovery failure within the deadline.
	_, err = p.Prepare(ctx, probe.PrepareJob{ServiceURI: "http://127.0.0.1:1", Pipeline: t2i, Model: "m"})
	if !errors.Is(err, probe.ErrDiscovery) {
		t.Errorf("dead orchestrator: %v", err)
	}
}

// A live job is prepared as go-livepeer's gateway prepares its start
// request: GetOrchestrator for cap 35 and the live pipeline name, then
// Livepeer-Segment under the selector id "35_<model>"
// (server/ai_session.go:445-470) and the transcoder URI the start goes to.
// Off-chain there is nothing to pay, so no periodic payer either.
func TestPrepareLiveOffChain(t *testing.T) {
	live, _ := capability.ByID(capability.LiveVideoToVideo)
	uri := startOffChainWith(t, orchestrator.ModelState{Pipeline: live, Model: "noop", Warm: true, Capacity: 1})
	p := Preparer{Gateway: &gateway.Gateway{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	prep, err := p.Prepare(ctx, probe.PrepareJob{ServiceURI: uri, Pipeline: live, Model: "noop", Units: float64(gateway.LiveInitialPixels)})
	if err != nil {
		t.Fatal(err)
	}
	var sd lpnet.SegData
	if err := pm.DecodeHeader(prep.Header.Get(gateway.SegmentHeader), &sd); err != nil {
		t.Fatal(err)
	}
	if string(sd.GetManifestId()) != "35_noop" || prep.Header.Get(gateway.PaymentHeader) != "" || prep.Live != nil {
		t.Fatalf("live start credentials %v, payment %q, periodic payer %v", &sd, prep.Header.Get(gateway.PaymentHeader), prep.Live)
	}
	if prep.JobURI != uri {
		t.Fatalf("live start goes to %q, want the transcoder URI %q", prep.JobURI, uri)
	}
	if _, err := p.Prepare(ctx, probe.PrepareJob{ServiceURI: uri, Pipeline: live, Model: "comfyui"}); !errors.Is(err, probe.ErrDiscovery) {
		t.Fatalf("a live pipeline the orchestrator does not run: %v", err)
	}
}
