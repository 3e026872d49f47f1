package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"

	"github.com/lpgauge/lpgauge/orchestrator/gpu"
)

// dockerEvent is a die or oom of one container, as the engine reported it.
type dockerEvent struct {
	containerID string
	action      string // "die" or "oom"
	exitCode    string
}

// errIdle ends a cold runner that had no jobs for IdleTimeout; it is not a
// failure.
var errIdle = errors.New("idle")

// superviseManaged keeps one container slot running until Shutdown: create,
// load, serve, and on failure capture why, remove, back off and re-create.
func (rt *Runtime) superviseManaged(r *record) {
	ctx := rt.ctx
	backoff := rt.cfg.RestartBackoff
	for ctx.Err() == nil {
		err := rt.runContainer(ctx, r)
		if ctx.Err() != nil {
			rt.setState(r, Stopped)
			return
		}
		if errors.Is(err, errIdle) {
			rt.mu.Lock()
			r.state = Stopped
			r.m.started = false // the next Reserve starts it again
			rt.mu.Unlock()
			rt.log.Info("stopped idle cold runner", "pipeline", r.m.Pipeline.Slug, "model", r.m.ModelID)
			return
		}
		rt.mu.Lock()
		if !r.readyAt.IsZero() && time.Since(r.readyAt) >= rt.cfg.StableAfter {
			r.failures, backoff = 0, rt.cfg.RestartBackoff // it ran well; this is a fresh failure
		}
		r.failures++
		r.restarts++
		r.m.restarts++
		r.lastError = err.Error()
		r.state = Failed
		r.crashLoop = r.failures >= rt.cfg.CrashLoopAfter
		wait := backoff
		if r.crashLoop {
			wait = rt.cfg.RestartBackoffMax
		}
		rt.mu.Unlock()
		rt.log.Error("runner failed", "pipeline", r.m.Pipeline.Slug, "model", r.m.ModelID, "replica", r.replica,
			"err", err, "failures", r.failures, "crash_loop", r.crashLoop, "restart_in", wait)
		if faults.noReplace {
			<-ctx.Done()
			rt.setState(r, Stopped)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			rt.setState(r, Stopped)
			return
		}
		backoff = min(2*backoff, rt.cfg.RestartBackoffMax)
	}
}

func (rt *Runtime) setState(r *record, s State) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	r.state = s
}

// runContainer runs one container of slot r from creation to its end and
// always removes it (and frees its port and VRAM) before returning. The
// returned error says why it ended.
func (rt *Runtime) runContainer(ctx context.Context, r *record) (err error) {
	m := r.m
	rt.mu.Lock()
	r.state, r.startedAt, r.readyAt, r.logTail = Creating, time.Now(), time.Time{}, nil
	rt.mu.Unlock()

	port, err := rt.ports.take()
	if err != nil {
		return err
	}
	defer rt.ports.release(port)
	name := rt.containerName(m.Model, port)

	var alloc *gpu.Allocation
	gpus, err := rt.inv.GPUs()
	if err != nil {
		return fmt.Errorf("read gpus: %w", err)
	}
	if len(gpus) > 0 {
		if alloc, err = rt.placer.Place(name, m.vram); err != nil {
			return fmt.Errorf("place on a GPU: %w", err)
		}
		defer rt.placer.Release(alloc)
	}
	uuid := ""
	if alloc != nil {
		uuid = alloc.GPU
	}
	token := newToken()
	cfg, host := rt.containerSpec(m.Model, port, uuid, token)

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	created, err := rt.engine.ContainerCreate(cctx, cfg, host, nil, nil, name)
	cancel()
	if err != nil {
		return fmt.Errorf("create container %s: %w", name, err)
	}
	id := created.ID
	events := make(chan dockerEvent, 8)
	rt.mu.Lock()
	r.containerID, r.name, r.port, r.alloc, r.token = id, name, port, alloc, token
	r.url = "http://" + hostPort(rt.cfg.HostIP, port)
	r.events, r.inFlight, r.version = events, 0, ""
	r.gen++
	rt.byCID[id] = r
	rt.mu.Unlock()
	defer func() {
		rt.mu.Lock()
		delete(rt.byCID, id)
		// Jobs on this container are lost with it; their leases go void.
		r.inFlight = 0
		r.gen++
		r.state = Failed
		if ctx.Err() != nil || errors.Is(err, errIdle) {
			r.state = Draining
		}
		rt.mu.Unlock()
		if err != nil && ctx.Err() == nil && !errors.Is(err, errIdle) {
			err = rt.explain(id, err)
		}
		rt.remove(id, name)
	}()

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = rt.engine.ContainerStart(sctx, id, container.StartOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("start container %s: %w", name, err)
	}
	rt.setState(r, Loading)
	if err := rt.waitReady(ctx, r, id, events); err != nil {
		return err
	}
	rt.onReady(ctx, r, id, alloc)
	return rt.monitor(ctx, r, id, events)
}

// explain adds the container's exit code, OOM flag and last log lines to
// err: "exited with code 1" alone tells an operator nothing.
func (rt *Runtime) explain(id string, err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var why []string
	if ins, ierr := rt.engine.ContainerInspect(ctx, id); ierr == nil && ins.State != nil {
		if ins.State.OOMKilled {
			why = append(why, "OOM-killed")
		}
		if !ins.State.Running && ins.State.Status == "exited" && !strings.Contains(err.Error(), "exit code") {
			why = append(why, fmt.Sprintf("exit code %d", ins.State.ExitCode))
		}
	}
	tail, lerr := logTail(ctx, rt.engine, id, rt.cfg.LogTailLines)
	rt.mu.Lock()
	if r := rt.recordOf(id); r != nil {
		r.logTail = tail
	}
	rt.mu.Unlock()
	if lerr == nil && len(tail) > 0 {
		why = append(why, "last log lines: "+strings.Join(tail, " | "))
	}
	if len(why) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(why, "; "))
}

// recordOf finds the record whose current or just-ended container is id.
// Called with rt.mu held.
func (rt *Runtime) recordOf(id string) *record {
	for _, m := range rt.order {
		for _, r := range m.records {
			if r.containerID == id {
				return r
			}
		}
	}
	return nil
}

// remove stops (SIGTERM, then SIGKILL after StopTimeout) and removes a
// container, on its own deadline: it runs at shutdown, after ctx is gone.
func (rt *Runtime) remove(id, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), rt.cfg.StopTimeout+15*time.Second)
	defer cancel()
	secs := int(rt.cfg.StopTimeout.Round(time.Second) / time.Second)
	if err := rt.engine.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		rt.log.Debug("stop container", "container", name, "err", err)
	}
	if err := rt.engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil {
		rt.log.Error("remove runner container", "container", name, "id", short(id), "err", err)
	}
}

// waitReady polls /health until the runner answers OK or IDLE. Connection
// errors are normal while the process boots; a die event, ERROR, or
// LoadTimeout end it.
func (rt *Runtime) waitReady(ctx context.Context, r *record, id string, events <-chan dockerEvent) error {
	deadline := time.NewTimer(rt.cfg.LoadTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(rt.cfg.LoadPoll)
	defer tick.Stop()
	rt.mu.Lock()
	url := r.url
	rt.mu.Unlock()
	var last error
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-events:
			if ev.containerID == id {
				return ev.err()
			}
		case <-deadline.C:
			return fmt.Errorf("not ready after %s (last health: %v)", rt.cfg.LoadTimeout, last)
		case <-tick.C:
			status, err := rt.health(ctx, url)
			switch {
			case err != nil:
				last = err
			case status == "OK" || status == "IDLE":
				return nil
			case status == "ERROR":
				return errors.New("runner reported ERROR while loading")
			default:
				last = fmt.Errorf("status %s", status)
			}
		}
	}
}

func (rt *Runtime) onReady(ctx context.Context, r *record, id string, alloc *gpu.Allocation) {
	rt.mu.Lock()
	url := r.url
	loadTime := time.Since(r.startedAt)
	rt.mu.Unlock()
	version := rt.version(ctx, url)
	if alloc != nil {
		// Host PIDs let the placer tell when this container's VRAM is
		// really released after it stops.
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if top, err := rt.engine.ContainerTop(tctx, id, nil); err == nil {
			rt.placer.SetPIDs(alloc, topPIDs(top))
		}
		cancel()
	}
	rt.met.load.WithLabelValues(r.m.Pipeline.Slug).Observe(loadTime.Seconds())
	rt.mu.Lock()
	r.version, r.readyAt, r.lastUsed = version, time.Now(), time.Now()
	if r.state == Loading {
		r.state = Ready
	}
	rt.mu.Unlock()
	rt.log.Info("runner ready", "pipeline", r.m.Pipeline.Slug, "model", r.m.ModelID, "container", short(id),
		"url", url, "gpu", allocGPU(alloc), "load_time", loadTime.Round(time.Millisecond), "version", version)
}

// monitor watches a serving runner: Docker die/oom events end it at once;
// /health runs every HealthInterval in the background so a hanging check
// never delays an event. A failed check does not count while a job is in
// flight: a single-worker runner may not answer /health mid-inference, and
// killing it would kill the paid job.
func (rt *Runtime) monitor(ctx context.Context, r *record, id string, events <-chan dockerEvent) error {
	tick := time.NewTicker(rt.cfg.HealthInterval)
	defer tick.Stop()
	type result struct {
		status string
		err    error
	}
	results := make(chan result, 1)
	checking := false
	fails := 0
	var loadingSince time.Time
	rt.mu.Lock()
	url := r.url
	rt.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-events:
			if ev.containerID == id {
				return ev.err()
			}
		case <-tick.C:
			if rt.idle(r) {
				return errIdle
			}
			if !checking {
				checking = true
				go func() {
					s, err := rt.health(ctx, url)
					results <- result{s, err}
				}()
			}
		case res := <-results:
			checking = false
			rt.mu.Lock()
			busy := r.inFlight > 0
			switch {
			case res.err != nil:
				if busy {
					fails = 0
					break
				}
				fails++
				if fails >= rt.cfg.HealthFailures {
					rt.mu.Unlock()
					return fmt.Errorf("health check failed %d times in a row: %w", fails, res.err)
				}
			case res.status == "ERROR":
				rt.mu.Unlock()
				return errors.New("runner reported ERROR")
			case res.status == "LOADING":
				// Reloading (e.g. after a CUDA OOM): no new jobs until it
				// is back, and not forever.
				fails = 0
				if loadingSince.IsZero() {
					loadingSince = time.Now()
				}
				if r.serving() {
					r.state = Loading
				}
				if time.Since(loadingSince) > rt.cfg.LoadTimeout {
					rt.mu.Unlock()
					return fmt.Errorf("LOADING for more than %s", rt.cfg.LoadTimeout)
				}
			default: // OK, IDLE
				fails, loadingSince = 0, time.Time{}
				if r.state == Loading {
					r.state = Ready
					if r.inFlight >= r.concurrency {
						r.state = Busy
					}
				}
			}
			rt.mu.Unlock()
		}
	}
}

func (rt *Runtime) idle(r *record) bool {
	if r.m.Warm || rt.cfg.IdleTimeout <= 0 {
		return false
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return r.inFlight == 0 && time.Since(r.lastUsed) > rt.cfg.IdleTimeout
}

// superviseExternal health-checks an operator-managed runner URL: capacity
// while it answers, zero with the reason while it does not. The runtime
// cannot restart it, so it keeps checking.
func (rt *Runtime) superviseExternal(r *record) {
	ctx := rt.ctx
	rt.setState(r, Loading)
	tick := time.NewTicker(rt.cfg.HealthInterval)
	defer tick.Stop()
	fails := 0
	check := func() {
		status, err := rt.health(ctx, r.url)
		if ctx.Err() != nil {
			return
		}
		var version string
		if err == nil && (status == "OK" || status == "IDLE") {
			version = rt.version(ctx, r.url)
		}
		rt.mu.Lock()
		defer rt.mu.Unlock()
		switch {
		case err == nil && (status == "OK" || status == "IDLE"):
			fails = 0
			r.lastError, r.version = "", version
			if !r.serving() {
				r.state, r.readyAt = Ready, time.Now()
				rt.log.Info("external runner ready", "url", r.url, "model", r.m.ModelID)
			}
		case err == nil && status == "LOADING":
			r.state = Loading
		case r.inFlight > 0 && err != nil: // busy: do not fail it mid-job
		default:
			fails++
			if err == nil {
				err = fmt.Errorf("status %s", status)
			}
			r.lastError = fmt.Sprintf("health check: %v", err)
			if fails >= rt.cfg.HealthFailures && r.state != Failed {
				r.state = Failed
				r.failures++
				rt.log.Error("external runner unhealthy", "url", r.url, "model", r.m.ModelID, "err", err)
			}
		}
	}
	check()
	for {
		select {
		case <-ctx.Done():
			rt.setState(r, Stopped)
			return
		case <-tick.C:
			check()
		}
	}
}

// health asks a runner's /health for its status.
func (rt *Runtime) health(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.HealthTimeout)
	defer cancel()
	var body struct {
		Status string `json:"status"`
	}
	if err := rt.getJSON(ctx, base+"/health", &body); err != nil {
		return "", err
	}
	return body.Status, nil
}

// version reads /version; an old runner without it reports "".
func (rt *Runtime) version(ctx context.Context, base string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var body struct {
		Version string `json:"version"`
	}
	if err := rt.getJSON(ctx, base+"/version", &body); err != nil {
		return ""
	}
	return body.Version
}

func (rt *Runtime) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("request %s: %w", url, err)
	}
	resp, err := rt.http.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", url, err)
	}
	return nil
}

// watchEvents follows the engine's die and oom events for this instance's
// containers and hands each to the container's supervisor, reconnecting
// (from where it left off) when the stream breaks. ready is closed once the
// first subscription is made, so no container starts before it.
func (rt *Runtime) watchEvents(ready chan<- struct{}) {
	f := rt.ownFilter()
	f.Add("type", string(events.ContainerEventType))
	f.Add("event", string(events.ActionDie))
	f.Add("event", string(events.ActionOOM))
	since := ""
	first := true
	for rt.ctx.Err() == nil {
		ctx, cancel := context.WithCancel(rt.ctx)
		msgs, errs := rt.engine.Events(ctx, events.ListOptions{Filters: f, Since: since})
		if first {
			close(ready)
			first = false
		}
	loop:
		for {
			select {
			case <-rt.ctx.Done():
				break loop
			case err := <-errs:
				if rt.ctx.Err() == nil {
					rt.log.Warn("docker event stream broke; reconnecting", "err", err)
				}
				break loop
			case msg := <-msgs:
				since = strconv.FormatInt(msg.Time, 10)
				rt.dispatch(dockerEvent{containerID: msg.Actor.ID, action: string(msg.Action), exitCode: msg.Actor.Attributes["exitCode"]})
			}
		}
		cancel()
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-rt.ctx.Done():
			t.Stop()
		}
	}
}

func (rt *Runtime) dispatch(ev dockerEvent) {
	rt.mu.Lock()
	r := rt.byCID[ev.containerID]
	var ch chan dockerEvent
	if r != nil {
		ch = r.events
	}
	rt.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- ev:
	default: // the supervisor already has an event to act on
	}
}

func (e dockerEvent) err() error {
	if e.action == string(events.ActionOOM) {
		return errors.New("container ran out of memory (oom event)")
	}
	return fmt.Errorf("container died (exit code %s)", e.exitCode)
}

func topPIDs(top container.TopResponse) []uint32 {
	col := -1
	for i, t := range top.Titles {
		if t == "PID" {
			col = i
		}
	}
	var out []uint32
	for _, p := range top.Processes {
		if col >= 0 && col < len(p) {
			if n, err := strconv.ParseUint(p[col], 10, 32); err == nil {
				out = append(out, uint32(n))
			}
		}
	}
	return out
}

func allocGPU(a *gpu.Allocation) string {
	if a == nil {
		return "cpu"
	}
	return a.GPU
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

func imagePullOptions() image.PullOptions { return image.PullOptions{} }

// drainPull reads a pull's JSON progress stream to the end and returns the
// first error message in it.
func drainPull(rc io.Reader) error {
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read pull progress: %w", err)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// versionLess compares dotted versions numerically where it can
// ("0.9.1" < "0.10.0"), falling back to string order.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(strings.TrimPrefix(a, "v"), "."), strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		if ea != nil || eb != nil {
			if pa[i] != pb[i] {
				return pa[i] < pb[i]
			}
			continue
		}
		if na != nb {
			return na < nb
		}
	}
	return len(pa) < len(pb)
}
