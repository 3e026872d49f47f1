package faults

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/lpgauge/lpgauge/orchestrator/runtime"
)

// dockerEngine is the test's Docker engine (DOCKER_HOST or the default
// socket). Without one the test fails under CI=true, where the engine is
// part of the suite, and skips loudly elsewhere, as orchestrator/runtime's
// tests do.
func dockerEngine(t *testing.T) *client.Client {
	t.Helper()
	c, err := runtime.NewEngine()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Ping(ctx)
		cancel()
		if err != nil {
			_ = c.Close()
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Docker engine required under CI=true: %v", err)
		}
		t.Skipf("DOCKER ENGINE MISSING, test not run (start dockerd; make deps does): %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// runnerImage builds the CPU reference runner image FROM scratch from the
// static runner binary TestMain built, through the engine API's legacy
// builder (no registry, no BuildKit), and removes it when the test ends.
func runnerImage(t *testing.T, c *client.Client) string {
	t.Helper()
	df, err := os.ReadFile("../orchestrator/runner/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(bin.runner)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, df}, {"runner", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("lpgauge-faults-runner:%d-%s", os.Getpid(), strings.ToLower(cleanName(t.Name())))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
			t.Errorf("remove test image %s: %v", tag, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: "Dockerfile", Remove: true, ForceRemove: true,
		Labels: map[string]string{"lpgauge.test": "faults"}, Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return tag
		} else if err != nil {
			t.Fatalf("build image %s: %v", tag, err)
		}
		if msg.Error != "" {
			t.Fatalf("build image %s: %s", tag, msg.Error)
		}
	}
}

func cleanName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '-'
	}, s)
}

// instance is a runtime instance id of the test's own: the orchestrator's
// containers carry it in their creator_id label, so the test finds them and
// a cleanup removes whatever a failed run left.
func instance(t *testing.T, c *client.Client) string {
	t.Helper()
	id := fmt.Sprintf("faults-%d-%s", os.Getpid(), cleanName(t.Name()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, ct := range containersOf(t, c, id) {
			_ = c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true})
		}
	})
	return id
}

// containersOf lists the containers (running or not) of one instance.
func containersOf(t *testing.T, c *client.Client, instance string) []container.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", runtime.LabelCreatorID+"="+instance))})
	if err != nil {
		t.Fatalf("list containers of %s: %v", instance, err)
	}
	return list
}

var faultyOrchestrator struct {
	once sync.Once
	path string
	err  error
}

// orchestratorFaulty is cmd/orchestrator built with -tags faultinject:
// its runtime's safeguards can be switched off by env.
func orchestratorFaulty(t *testing.T) string {
	t.Helper()
	f := &faultyOrchestrator
	f.once.Do(func() {
		f.path = filepath.Join(filepath.Dir(bin.orchestrator), "orchestrator-faultinject")
		if out, err := exec.Command("go", "build", "-tags", "faultinject", "-o", f.path, "../cmd/orchestrator").CombinedOutput(); err != nil {
			f.err = fmt.Errorf("build cmd/orchestrator -tags faultinject: %v\n%s", err, out)
		}
	})
	if f.err != nil {
		t.Fatal(f.err)
	}
	return f.path
}

// dockerOrchestrator runs an orchestrator binary with -runners docker: one
// warm text-to-image model on the runner image, the runner's latency set
// through its optimization flags (container env), and short runtime
// intervals so failures show in seconds.
func dockerOrchestrator(t *testing.T, path string, env []string, img, instance, model string, latency time.Duration) *orch {
	t.Helper()
	flags, _ := json.Marshal(map[string]string{"RUNNER_MEAN_LATENCY": latency.String(), "RUNNER_JITTER": "0s"})
	models := fmt.Sprintf(`[{"pipeline":"text-to-image","model_id":%q,"warm":true,"capacity":1,"optimization_flags":%s}]`, model, flags)
	port, _ := strconv.Atoi(freeAddr(t)[len("127.0.0.1:"):])
	port = min(port, 65535-9)
	o := &orch{}
	addr, op := freeAddr(t), freeAddr(t)
	args := []string{"-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", op, "-runners", "docker", "-aiModels", models,
		"-queue-timeout", "500ms",
		"-runtime.image", img, "-runtime.instance-id", instance,
		"-runtime.port-first", strconv.Itoa(port), "-runtime.port-last", strconv.Itoa(port + 9),
		"-runtime.health-interval", "500ms", "-runtime.health-timeout", "1s", "-runtime.load-poll", "100ms",
		"-runtime.restart-backoff", "200ms", "-runtime.restart-backoff-max", "1s",
		"-runtime.stop-timeout", "1s", "-runtime.drain-timeout", "2s"}
	o.proc = start(t, "orchestrator "+addr, path, env, args...)
	o.URL, o.Op = "http://"+addr, "http://"+op
	waitFor(t, 30*time.Second, "orchestrator "+addr+" answers /healthz", func() bool {
		if o.exited() {
			t.Fatalf("orchestrator exited: %v\n%s", o.err, o.out.String())
		}
		code, _ := get(o.URL + "/healthz")
		return code == http.StatusOK
	})
	_, st := get(o.Op + "/status")
	if m := regexp.MustCompile(`"eth_address":"(0x[0-9a-f]{40})"`).FindStringSubmatch(st); m != nil {
		o.Address = m[1]
	} else {
		t.Fatalf("no eth_address in /status: %s", st)
	}
	return o
}

// capacity is what /status says of the one model: capacity and in use.
func (o *orch) capacity(t *testing.T) (capacity, inUse int) {
	t.Helper()
	code, body := get(o.Op + "/status")
	if code != http.StatusOK {
		t.Fatalf("orchestrator /status: %d %s", code, body)
	}
	var st struct {
		Models []struct {
			Capacity int `json:"capacity"`
			InUse    int `json:"in_use"`
		} `json:"models"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Models) != 1 {
		t.Fatalf("orchestrator /status: %v: %s", err, body)
	}
	return st.Models[0].Capacity, st.Models[0].InUse
}

// runtimeStatus is the orchestrator's /status/runtime, the fields the
// scenarios read.
type runtimeStatus struct {
	EngineError string `json:"engine_error"`
	Models      []struct {
		Capacity int    `json:"capacity"`
		Reason   string `json:"reason"`
	} `json:"models"`
	Runners []struct {
		State       string `json:"state"`
		ContainerID string `json:"container_id"`
		Restarts    int    `json:"restarts"`
		LastError   string `json:"last_error"`
	} `json:"runners"`
}

func (o *orch) runtimeStatus(t *testing.T) runtimeStatus {
	t.Helper()
	code, body := get(o.Op + "/status/runtime")
	var st runtimeStatus
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || len(st.Models) != 1 || len(st.Runners) != 1 {
		t.Fatalf("orchestrator /status/runtime: %d %s", code, body)
	}
	return st
}

// job posts one text-to-image job the way a runner-style client does and
// returns the status and body.
func (o *orch) job(model string) (int, string) {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post(o.URL+"/text-to-image", "application/json",
		strings.NewReader(fmt.Sprintf(`{"prompt":"a lighthouse","model_id":%q,"width":64,"height":64}`, model)))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
