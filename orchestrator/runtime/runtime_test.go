package runtime

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator"
)

func postJob(t *testing.T, l orchestrator.Lease, timeout time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	body := strings.NewReader(`{"prompt":"a lighthouse","model_id":"` + "" + `","width":64,"height":64}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.URL()+"/text-to-image", body)
	req.Header.Set("Content-Type", "application/json")
	if l.Token() != "" {
		req.Header.Set("Authorization", "Bearer "+l.Token())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("job on %s: %v", l.URL(), err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// Warm runners come up at boot, serve jobs, and capacity is exact: two
// containers of concurrency 1 take two jobs and refuse the third.
func TestWarmRunnersServe(t *testing.T) {
	m := t2i("SG161222/RealVisXL_V4.0_Lightning")
	m.Containers = 2
	m.OptimizationFlags = map[string]string{"SFAST": "true"}
	cfg := testConfig(t, m)
	cfg.Image = runnerImage // the CPU reference runner, as an operator would run it
	rt := start(t, cfg)
	p := m.Pipeline
	waitFor(t, 20*time.Second, "two warm runners ready", func() bool { return rt.States()[0].Capacity == 2 })

	st := rt.States()[0]
	if !st.Warm || st.RunnerVersion == "" {
		t.Errorf("state %+v: want warm with a runner version", st)
	}
	a, err := rt.Reserve(context.Background(), p, m.ModelID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rt.Reserve(context.Background(), p, m.ModelID)
	if err != nil {
		t.Fatal(err)
	}
	if a.URL() == b.URL() {
		t.Errorf("both leases on %s: concurrency 1 runners must not share", a.URL())
	}
	if _, err := rt.Reserve(context.Background(), p, m.ModelID); !errors.Is(err, orchestrator.ErrNoCapacity) {
		t.Errorf("third reservation: %v, want ErrNoCapacity", err)
	}
	if st := rt.States()[0]; st.InUse != 2 {
		t.Errorf("in use %d, want 2", st.InUse)
	}
	for _, l := range []orchestrator.Lease{a, b} {
		if code := postJob(t, l, 20*time.Second); code != http.StatusOK {
			t.Errorf("job on %s: status %d", l.URL(), code)
		}
	}
	a.Release()
	a.Release() // twice is harmless, and frees one slot only
	if st := rt.States()[0]; st.InUse != 1 {
		t.Errorf("after release in use %d, want 1", st.InUse)
	}
	b.Release()
	if _, err := rt.Reserve(context.Background(), p, "other/model"); !errors.Is(err, orchestrator.ErrUnknownModel) {
		t.Errorf("unknown model: %v", err)
	}

	// What operators see in `docker inspect`: labels, loopback port, env, mount.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := engine.ContainerList(ctx, container.ListOptions{Filters: rt.ownFilter()})
	if err != nil || len(list) != 2 {
		t.Fatalf("containers %d, %v; want 2", len(list), err)
	}
	ins, err := engine.ContainerInspect(ctx, list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(ins.Config.Env, " ")
	for _, want := range []string{"PIPELINE=text-to-image", "MODEL_ID=" + m.ModelID, "SFAST=true", "AUTH_TOKEN="} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %q", env, want)
		}
	}
	if b := ins.HostConfig.PortBindings["8000/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" {
		t.Errorf("port bindings %+v, want one on 127.0.0.1", b)
	}
	if len(ins.Mounts) != 1 || ins.Mounts[0].Destination != "/models" || ins.Mounts[0].Source != cfg.ModelsDir {
		t.Errorf("mounts %+v, want %s at /models", ins.Mounts, cfg.ModelsDir)
	}
	if ins.Config.Labels[LabelCreator] != CreatorValue || ins.Config.Labels[LabelCreatorID] != cfg.InstanceID {
		t.Errorf("labels %v", ins.Config.Labels)
	}
	if len(ins.HostConfig.DeviceRequests) != 0 {
		t.Errorf("CPU mode container has device requests %+v", ins.HostConfig.DeviceRequests)
	}
}

// `docker kill` of a warm runner is noticed at once (the die event, not the
// next health round), capacity drops, and a new container brings it back.
func TestKilledRunnerIsNoticedAndReplaced(t *testing.T) {
	m := t2i("stabilityai/sd-turbo")
	rt := start(t, testConfig(t, m))
	waitFor(t, 20*time.Second, "runner ready", func() bool { return rt.States()[0].Capacity == 1 })
	before := rt.Status().Containers[0]

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, _ := engine.ContainerList(ctx, container.ListOptions{Filters: rt.ownFilter()})
	if len(list) != 1 {
		t.Fatalf("%d containers, want 1", len(list))
	}
	if err := engine.ContainerKill(ctx, list[0].ID, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 5*time.Second, "kill noticed", func() bool {
		c := rt.Status().Containers[0]
		return c.Restarts == 1 || c.State != Ready
	})
	t.Logf("kill noticed after %s", took)
	waitFor(t, 15*time.Second, "capacity back", func() bool { return rt.States()[0].Capacity == 1 })
	after := rt.Status().Containers[0]
	if after.ContainerID == before.ContainerID || after.Restarts != 1 {
		t.Errorf("after kill: container %s restarts %d; want a new container and 1 restart", after.ContainerID, after.Restarts)
	}
	if !strings.Contains(after.LastError, "died") || !strings.Contains(after.LastError, "137") {
		t.Errorf("last error %q does not say it died with 137", after.LastError)
	}
}

// A runner that crashes on start ends in crash-loop: capacity 0 and a reason
// an operator can act on (exit code, the runner's own last words).
func TestCrashOnStartEndsInCrashLoop(t *testing.T) {
	m := t2i("missing/weights")
	m.OptimizationFlags = map[string]string{"CRASH_ON_START": "true"}
	cfg := testConfig(t, m)
	cfg.CrashLoopAfter = 3
	rt := start(t, cfg)
	waitFor(t, 20*time.Second, "crash loop", func() bool { return rt.Status().Containers[0].CrashLoop })
	ms := modelStatus(rt, m.ModelID)
	if ms.Capacity != 0 || ms.Failed != 1 {
		t.Errorf("model %+v: want capacity 0, one failed runner", ms)
	}
	for _, want := range []string{"crash loop: 3 failures", "exit code 3", "fatal: model weights not found in /models/missing/weights"} {
		if !strings.Contains(ms.Reason, want) {
			t.Errorf("reason %q lacks %q", ms.Reason, want)
		}
	}
	if _, err := rt.Reserve(context.Background(), m.Pipeline, m.ModelID); !errors.Is(err, orchestrator.ErrNoCapacity) {
		t.Errorf("reserve on a crash-looping model: %v", err)
	}
	if st := rt.States()[0]; st.Capacity != 0 {
		t.Errorf("advertised capacity %d while crash-looping", st.Capacity)
	}
}

// A job longer than the health interval, on a runner whose /health stalls
// while it works (single-worker ai-runner), is not killed mid-job.
func TestLongJobIsNotKilled(t *testing.T) {
	m := t2i("slow/model")
	m.OptimizationFlags = map[string]string{"HEALTH_BLOCKS_DURING_JOB": "true", "JOB_TIME": "3s"}
	cfg := testConfig(t, m)
	cfg.HealthInterval, cfg.HealthTimeout, cfg.HealthFailures = 300*time.Millisecond, 200*time.Millisecond, 2
	rt := start(t, cfg)
	waitFor(t, 20*time.Second, "runner ready", func() bool { return rt.States()[0].Capacity == 1 })
	before := rt.Status().Containers[0]
	l, err := rt.Reserve(context.Background(), m.Pipeline, m.ModelID)
	if err != nil {
		t.Fatal(err)
	}
	if code := postJob(t, l, 15*time.Second); code != http.StatusOK {
		t.Fatalf("long job: status %d", code)
	}
	l.Release()
	after := rt.Status().Containers[0]
	if after.ContainerID != before.ContainerID || after.Restarts != 0 {
		t.Errorf("runner replaced during a job: %s → %s, restarts %d, last error %q", before.ContainerID, after.ContainerID, after.Restarts, after.LastError)
	}
}

// Two orchestrators on one engine: booting one removes only its own
// leftovers, never the other's runners (go-livepeer #3754).
func TestInstancesNeverRemoveEachOthersContainers(t *testing.T) {
	m := t2i("shared/engine")
	cfgB := testConfig(t, m)
	cfgB.InstanceID += "-b"
	b := start(t, cfgB)
	waitFor(t, 20*time.Second, "instance b ready", func() bool { return b.States()[0].Capacity == 1 })

	cfgA := testConfig(t, m)
	cfgA.InstanceID += "-a"
	// A leftover of instance a (its orchestrator was kill -9'd).
	leftover := createBare(t, map[string]string{LabelCreator: CreatorValue, LabelCreatorID: cfgA.InstanceID})
	a := start(t, cfgA)
	waitFor(t, 20*time.Second, "instance a ready", func() bool { return a.States()[0].Capacity == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := engine.ContainerInspect(ctx, leftover); err == nil {
		t.Error("instance a's leftover container survived a's boot")
	}
	bList, _ := engine.ContainerList(ctx, container.ListOptions{Filters: b.ownFilter()})
	if len(bList) != 1 || b.States()[0].Capacity != 1 {
		t.Fatalf("instance b lost its runner when a booted: %d containers, capacity %d", len(bList), b.States()[0].Capacity)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	bList, _ = engine.ContainerList(ctx, container.ListOptions{Filters: b.ownFilter()})
	if len(bList) != 1 || b.Status().Containers[0].Restarts != 0 {
		t.Errorf("instance b's runner touched by a's shutdown: %d containers", len(bList))
	}
}

// createBare makes a container with labels but no runtime behind it.
func createBare(t *testing.T, labels map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	labels[testLabel] = "runtime"
	c, err := engine.ContainerCreate(ctx, &container.Config{Image: fakeImage, Env: []string{"PIPELINE=llm", "MODEL_ID=x"}, Labels: labels}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	})
	if err := engine.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// Shutdown leaves no container behind and stops them in parallel: three
// runners that ignore nothing still go within one stop grace or so.
func TestShutdownLeavesNoContainer(t *testing.T) {
	m := t2i("many/replicas")
	m.Containers = 3
	llm, _ := capability.BySlug("llm")
	cold := Model{Pipeline: llm, ModelID: "cold/llm", Concurrency: 4}
	cfg := testConfig(t, m, cold)
	rt := start(t, cfg)
	waitFor(t, 20*time.Second, "three runners", func() bool { return rt.States()[0].Capacity == 3 })
	// The cold model starts on its first reservation, which is refused.
	if _, err := rt.Reserve(context.Background(), llm, cold.ModelID); !errors.Is(err, orchestrator.ErrNoCapacity) {
		t.Fatalf("cold reservation: %v", err)
	}
	waitFor(t, 20*time.Second, "cold runner loaded", func() bool { return rt.States()[1].Capacity == 4 })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begin := time.Now()
	if err := rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("shutdown of 4 runners took %s", time.Since(begin))
	list, err := engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelCreatorID+"="+cfg.InstanceID))})
	if err != nil || len(list) != 0 {
		t.Errorf("after shutdown %d containers remain (%v)", len(list), err)
	}
	if _, err := rt.Reserve(context.Background(), m.Pipeline, m.ModelID); !errors.Is(err, orchestrator.ErrNoCapacity) {
		t.Errorf("reserve after shutdown: %v", err)
	}
}
