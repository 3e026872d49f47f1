package tester

import (
	"context"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/preparer"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// The live probe end to end against the reference orchestrator (issue 16):
// GetOrchestrator for cap 35, the start request through its checks, its
// trickle server and in-process CPU live runner, the session ended by our
// DELETE. Every frame comes back transformed and matched, at the input's
// rate, and the runner goes back to the pool so a second session starts.
func TestLiveProbeAgainstTheReferenceOrchestrator(t *testing.T) {
	ref := orchtest.NewReference(t, orchtest.ReferenceConfig{Models: []aimodels.Model{
		{Pipeline: "live-video-to-video", ModelID: "noop", Warm: true, Capacity: 1}}})
	live, _ := probe.Lookup("live-video-to-video")
	p := probe.New(probe.Config{Preparer: preparer.Preparer{Gateway: &gateway.Gateway{}}, Timeouts: probe.Timeouts{Total: 30 * time.Second},
		Live: probe.LiveConfig{Duration: 3 * time.Second, FPS: 20, Width: 64, Height: 32, Segment: 250 * time.Millisecond}})
	for i := 0; i < 2; i++ {
		r := p.Run(context.Background(), probe.Job{Orchestrator: ref.Address, ServiceURI: ref.URI, Pipeline: live, Model: "noop", Seed: int64(i + 1)})
		if r.Outcome != results.Success {
			t.Fatalf("session %d: %s %s/%s (%s); %+v", i, r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.Live)
		}
		lv := r.Live
		t.Logf("session %d: %+v", i, lv)
		if lv.FramesIn != 60 || lv.FramesOut != 60 || lv.OutFPS < 19.6 || lv.OutFPS > 20.4 || lv.FirstFrame <= 0 || r.Total != lv.FirstSegment {
			t.Fatalf("session %d: frames %d/%d, fps %.2f, first frame %s, total %s", i, lv.FramesIn, lv.FramesOut, lv.OutFPS, lv.FirstFrame, r.Total)
		}
		// The runner reports IDLE once our DELETE ends its input, and O
		// polls it back into the pool: wait for that before the next start.
		time.Sleep(time.Second)
	}
}
