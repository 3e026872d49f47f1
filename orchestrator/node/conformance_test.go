package node

import (
	"context"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// TestDemoOrchestratorAnswersGoLivepeer: the orchestrator as `make demo`
// starts it (demo/demo.go orchestratorArgs: off chain, text-to-image
// SDXL-Lightning warm) answers a go-livepeer AI gateway's GetOrchestrator
// (conformance vector 01a) with capabilities go-livepeer's CompatibleWith
// accepts, and answers Ping.
func TestDemoOrchestratorAnswersGoLivepeer(t *testing.T) {
	b, err := os.ReadFile("../../conformance/testdata/go-livepeer/01a_orchestrator_request_text_to_image.hex")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(strings.TrimSpace(string(b)))
	var req lpnet.OrchestratorRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"-httpAddr", addr, "-serviceAddr", addr, "-eth.addr", "0x1111111111111111111111111111111111111111",
			"-aiModels", "text-to-image:ByteDance/SDXL-Lightning:true", "-mean-latency", "150ms", "-jitter", "30ms",
			"-failure-rate", "0", "-capacity", "2"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := lpnet.NewOrchestratorClient(conn)
	var info *lpnet.OrchestratorInfo
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		info, err = client.GetOrchestrator(cctx, &req)
		ccancel()
		if err == nil && capability.CompatibleWith(req.GetCapabilities(), info.GetCapabilities()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetOrchestrator(01a): %v; capabilities %v not compatible with go-livepeer's request", err, info.GetCapabilities())
		}
	}
	if info.GetCapabilities().GetVersion() != "0.9.1" {
		t.Errorf("version %q, want the go-livepeer release we conform to", info.GetCapabilities().GetVersion())
	}
	if m := info.GetCapabilities().GetConstraints().GetPerCapability()[27].GetModels()["ByteDance/SDXL-Lightning"]; !m.GetWarm() || m.GetCapacity() != 1 {
		t.Errorf("model constraint %v, want warm with go-livepeer's capacity 1", m)
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := client.Ping(pctx, &lpnet.PingPong{Value: []byte("ping")}); err != nil {
		t.Errorf("Ping: %v", err)
	}
}
