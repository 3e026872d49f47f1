package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
)

// The suite runs against the real Docker engine with images built FROM
// scratch from our own static binaries: fakeImage (testdata/fakerunner, which
// can crash on start and stall /health during a job) and runnerImage (the CPU
// reference runner, cmd/runner, with orchestrator/runner's Dockerfile). Both
// are built in TestMain, so a test that needs either image never skips for
// want of it: without an engine every Docker test skips (the package fails
// under CI=true), and an image that does not build fails the package.
var (
	engine      *client.Client
	noDocker    string // why the Docker tests cannot run
	fakeImage   string
	runnerImage string
)

const testLabel = "lpgauge.test" // on every image and container the tests make

func TestMain(m *testing.M) {
	code := func() int {
		if err := connectDocker(); err != nil {
			if os.Getenv("CI") == "true" {
				fmt.Fprintf(os.Stderr, "FAIL: Docker engine required under CI=true: %v\n", err)
				return 1
			}
			noDocker = err.Error()
			fmt.Fprintf(os.Stderr, "\n!!! SKIPPING every Docker runtime test: %v\n!!! start dockerd (make deps does) to run them\n\n", err)
			return m.Run()
		}
		defer teardownDocker()
		// An engine that answers but an image that does not build is our
		// bug, not a missing component: fail, CI or not.
		if err := buildImages(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: test images: %v\n", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func connectDocker() error {
	c, err := NewEngine()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine not answering: %w", err)
	}
	engine = c
	return nil
}

func buildImages() error {
	tag := fmt.Sprintf("lpgauge-runtime-test-fake:%d", os.Getpid())
	if err := buildImage("./testdata/fakerunner", tag, ""); err != nil {
		return err
	}
	fakeImage = tag
	tag = fmt.Sprintf("lpgauge-runtime-test-runner:%d", os.Getpid())
	if err := buildImage("../../cmd/runner", tag, "../runner/Dockerfile"); err != nil {
		return fmt.Errorf("cpu reference runner image: %w", err)
	}
	runnerImage = tag
	return nil
}

// buildImage compiles pkg as a static binary named "runner" and builds an
// image from it with the given Dockerfile (or a minimal one) through the
// engine API's legacy builder: no registry, no BuildKit.
func buildImage(pkg, tag, dockerfile string) error {
	dir, err := os.MkdirTemp("", "lpgauge-runtime-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "runner"), pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v: %s", pkg, err, out)
	}
	df := []byte("FROM scratch\nCOPY runner /runner\nEXPOSE 8000\nENTRYPOINT [\"/runner\"]\n")
	if dockerfile != "" {
		if df, err = os.ReadFile(dockerfile); err != nil {
			return err
		}
	}
	bin, err := os.ReadFile(filepath.Join(dir, "runner"))
	if err != nil {
		return err
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, df}, {"runner", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := engine.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: "Dockerfile", Remove: true, ForceRemove: true,
		Labels: map[string]string{testLabel: "runtime"}, Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("build image %s: %w", tag, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("build image %s: %s", tag, msg.Error)
		}
	}
}

func teardownDocker() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Containers first: a test that failed half-way may have left some.
	list, _ := engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", testLabel))})
	for _, c := range list {
		_ = engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
	for _, img := range []string{fakeImage, runnerImage} {
		if img != "" {
			if _, err := engine.ImageRemove(ctx, img, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
				fmt.Fprintf(os.Stderr, "remove test image %s: %v\n", img, err)
			}
		}
	}
}

func needDocker(t *testing.T) {
	t.Helper()
	if noDocker != "" {
		t.Skipf("DOCKER ENGINE MISSING, test not run: %s", noDocker)
	}
}

var portBase atomic.Int32

// testConfig is a fast config: short intervals so failures show in seconds,
// a port range of its own per runtime, and an instance id unique per test.
func testConfig(t *testing.T, models ...Model) Config {
	t.Helper()
	c := DefaultConfig()
	c.InstanceID = fmt.Sprintf("test-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	c.Image = fakeImage
	c.ModelsDir = t.TempDir()
	first := 31000 + int(portBase.Add(1))*20
	c.PortFirst, c.PortLast = first, first+19
	c.HealthInterval, c.HealthTimeout, c.LoadPoll = 500*time.Millisecond, time.Second, 100*time.Millisecond
	c.LoadTimeout = 20 * time.Second
	c.RestartBackoff, c.RestartBackoffMax = 200*time.Millisecond, time.Second
	c.StopTimeout, c.DrainTimeout = time.Second, 2*time.Second
	c.Models = models
	return c
}

func t2i(model string) Model {
	p, _ := capability.BySlug("text-to-image")
	return Model{Pipeline: p, ModelID: model, Warm: true}
}

// start builds and starts a runtime whose containers are removed however
// the test ends.
func start(t *testing.T, cfg Config) *Runtime {
	t.Helper()
	needDocker(t)
	rt, err := New(cfg, labelled{engine}, gpu.CPU{Reason: "test"}, gpu.DefaultEstimates(), slog.New(slog.NewTextHandler(testWriter{t}, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		sweep(t, cfg.InstanceID)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return rt
}

// labelled adds the test label to every container the runtime creates, so
// TestMain can remove leftovers of a crashed test run.
type labelled struct{ *client.Client }

func (l labelled) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, plat *ocispec.Platform, name string) (container.CreateResponse, error) {
	cfg.Labels[testLabel] = "runtime"
	return l.Client.ContainerCreate(ctx, cfg, host, net, plat, name)
}

func sweep(t *testing.T, instance string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	list, err := engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelCreatorID+"="+instance))})
	if err != nil {
		t.Errorf("list containers: %v", err)
		return
	}
	for _, c := range list {
		t.Errorf("container %s %v of %s left behind", short(c.ID), c.Names, instance)
		_ = engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not within %s: %s", within, what)
	return 0
}

func modelStatus(rt *Runtime, model string) ModelStatus {
	for _, m := range rt.Status().Models {
		if m.Model == model {
			return m
		}
	}
	return ModelStatus{}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
