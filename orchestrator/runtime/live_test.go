package runtime

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/orchestrator"
)

// A live model runs as a live runner container, as go-livepeer starts one
// (ai/worker/docker.go:60,400-403): PIPELINE=live-video-to-video,
// MODEL_ID=<pipeline name>, the API on 8900. The orchestrator borrows it for
// a stream, and it goes back to the pool when its /health says IDLE.
func TestLiveRunnerContainer(t *testing.T) {
	live, _ := capability.ByID(capability.LiveVideoToVideo)
	m := Model{Pipeline: live, ModelID: "noop", Warm: true, OptimizationFlags: map[string]string{"LIVE_TIME": "1500ms"}}
	cfg := testConfig(t, m)
	rt := start(t, cfg)
	waitFor(t, 20*time.Second, "the live runner ready", func() bool { return rt.States()[0].Capacity == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := engine.ContainerList(ctx, container.ListOptions{Filters: rt.ownFilter()})
	if err != nil || len(list) != 1 {
		t.Fatalf("containers %d, %v; want 1", len(list), err)
	}
	ins, err := engine.ContainerInspect(ctx, list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(ins.Config.Env, " ")
	for _, want := range []string{"PIPELINE=live-video-to-video", "MODEL_ID=noop"} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %q", env, want)
		}
	}
	if b := ins.HostConfig.PortBindings[LiveContainerPort]; len(b) != 1 || b[0].HostIP != "127.0.0.1" {
		t.Errorf("port bindings %+v, want 8900/tcp on 127.0.0.1", ins.HostConfig.PortBindings)
	}

	// The container never connects back here: the stream ends when the
	// fake runner goes IDLE by itself.
	chans := trickle.NewServer(trickle.ServerConfig{BasePath: orchestrator.TrickleBasePath})
	defer chans.Stop()
	srv, err := orchestrator.New(orchestrator.Config{
		MaxBodyBytes: 1 << 20, MaxResponseBytes: 1 << 20, MaxQueue: 1, QueueTimeout: time.Second,
		RunnerTimeout: time.Minute, ResultTTL: time.Minute,
		Live: &orchestrator.LiveConfig{Channels: chans, HealthPoll: 100 * time.Millisecond},
	}, rt, orchestrator.OffChain{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	resp, err := http.Post(hs.URL+"/live-video-to-video", "application/json",
		strings.NewReader(`{"model_id":"noop","params":null,"publish_url":"","subscribe_url":"","stream_id":"s1","gateway_request_id":"g1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("start on the container: %d", resp.StatusCode)
	}
	if st := rt.States()[0]; st.InUse != 1 {
		t.Errorf("while streaming in use %d, want 1", st.InUse)
	}
	// The container reports IDLE after LIVE_TIME: back in the pool.
	waitFor(t, 10*time.Second, "the live container back in the pool", func() bool { return rt.States()[0].InUse == 0 })
}

// The CPU reference runner image, started as a live runner container with
// only PIPELINE and MODEL_ID, answers on 8900 and reports IDLE: ready.
func TestLiveRunnerImageListensOn8900(t *testing.T) {
	live, _ := capability.ByID(capability.LiveVideoToVideo)
	cfg := testConfig(t, Model{Pipeline: live, ModelID: "noop", Warm: true})
	cfg.Image = runnerImage
	rt := start(t, cfg)
	waitFor(t, 30*time.Second, "the live runner image ready on 8900", func() bool { return rt.States()[0].Capacity == 1 })
}
