package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lpgauge/lpgauge/capability"
)

// Engine is the part of the Docker client the runtime uses; *client.Client
// implements it. Tests use the real engine; the interface documents exactly
// what the runtime asks Docker to do.
type Engine interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
	ContainerTop(ctx context.Context, containerID string, arguments []string) (container.TopResponse, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, refStr string, options image.PullOptions) (io.ReadCloser, error)
}

var _ Engine = (*client.Client)(nil)

// NewEngine connects to the engine named by the environment (DOCKER_HOST…)
// and negotiates the API version, so a current client talks to the 20.10
// engines Debian ships (API 1.41).
func NewEngine() (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}

// Labels on every runner container. creator marks this project's runners;
// creator_id marks the orchestrator instance that owns them, so boot cleanup
// never touches another instance's containers.
const (
	LabelCreator   = "creator"
	LabelCreatorID = "creator_id"
	CreatorValue   = "lpgauge-orchestrator"
	labelPipeline  = "lpgauge.pipeline"
	labelModel     = "lpgauge.model_id"
	labelGPU       = "lpgauge.gpu"
	labelPort      = "lpgauge.host_port"
)

func (rt *Runtime) ownFilter() filters.Args {
	return filters.NewArgs(
		filters.Arg("label", LabelCreator+"="+CreatorValue),
		filters.Arg("label", LabelCreatorID+"="+rt.cfg.InstanceID),
	)
}

// containerSpec builds what ai-runner expects: PIPELINE, MODEL_ID, the
// optimization flags as env, weights at /models, the API on 8000/tcp (8900
// for live-video-to-video, go-livepeer ai/worker/docker.go:60)
// published on one loopback port, and the GPU by UUID.
func (rt *Runtime) containerSpec(m Model, port int, gpuUUID, token string) (*container.Config, *container.HostConfig) {
	env := []string{"PIPELINE=" + m.Pipeline.Slug, "MODEL_ID=" + m.ModelID, "AUTH_TOKEN=" + token}
	flags := make([]string, 0, len(m.OptimizationFlags))
	for k, v := range m.OptimizationFlags {
		flags = append(flags, k+"="+v)
	}
	sort.Strings(flags) // stable env makes containers comparable in `docker inspect`
	env = append(env, flags...)
	img := m.Image
	if img == "" {
		img = rt.cfg.Image
	}
	cport := nat.Port("8000/tcp")
	if m.Pipeline.ID == capability.LiveVideoToVideo {
		cport = nat.Port(LiveContainerPort)
	}
	cfg := &container.Config{
		Image:        img,
		Env:          env,
		ExposedPorts: nat.PortSet{cport: {}},
		Labels: map[string]string{
			LabelCreator:   CreatorValue,
			LabelCreatorID: rt.cfg.InstanceID,
			labelPipeline:  m.Pipeline.Slug,
			labelModel:     m.ModelID,
			labelGPU:       gpuUUID,
			labelPort:      strconv.Itoa(port),
		},
	}
	host := &container.HostConfig{
		PortBindings: nat.PortMap{cport: {{HostIP: rt.cfg.HostIP, HostPort: strconv.Itoa(port)}}},
		// The runtime restarts runners itself (with backoff and a crash-loop
		// state); a Docker restart policy would fight it and revive runners
		// after the orchestrator is gone (go-livepeer #3776).
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}
	if rt.cfg.ModelsDir != "" {
		// A mount (not a bind string) fails at create when the directory is
		// missing, instead of Docker silently creating an empty one and the
		// runner timing out looking for weights.
		host.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: rt.cfg.ModelsDir, Target: "/models"}}
	}
	if gpuUUID != "" {
		host.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{gpuUUID}, Capabilities: [][]string{{"gpu"}}}}
	}
	return cfg, host
}

// LiveContainerPort is where a live runner container listens
// (go-livepeer ai/worker/docker.go:60: containerPort 8900 for live).
const LiveContainerPort = "8900/tcp"

// containerName is unique per instance and port, and readable in `docker ps`.
func (rt *Runtime) containerName(m Model, port int) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
				return r
			}
			return '-'
		}, s)
	}
	return fmt.Sprintf("lpgauge-%s-%s-%s-%d", clean(rt.cfg.InstanceID), clean(m.Pipeline.Slug), clean(m.ModelID), port)
}

// logTail reads the container's last n log lines (stdout and stderr
// interleaved as Docker stores them).
func logTail(ctx context.Context, e Engine, id string, n int) ([]string, error) {
	rc, err := e.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return nil, fmt.Errorf("container logs: %w", err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 64<<10)); err != nil {
		return nil, fmt.Errorf("read container logs: %w", err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil, nil
	}
	return lines, nil
}

// ports hands out host ports from the configured range, checking each is
// really free (another program may hold one) before a container binds it.
type ports struct {
	mu          sync.Mutex
	host        string
	first, last int
	next        int
	used        map[int]bool
}

func newPorts(host string, first, last int) *ports {
	return &ports{host: host, first: first, last: last, next: first, used: map[int]bool{}}
}

func (p *ports) take() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.last - p.first + 1
	for i := 0; i < n; i++ {
		port := p.first + (p.next-p.first+i)%n
		if p.used[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		p.used[port] = true
		// Round-robin so a just-freed port (whose old container may still be
		// going away) is the last one reused.
		p.next = port + 1
		return port, nil
	}
	return 0, fmt.Errorf("no free host port in %d-%d on %s", p.first, p.last, p.host)
}

func (p *ports) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, port)
}
