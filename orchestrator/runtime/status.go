package runtime

import (
	"fmt"
	"time"

	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
)

// The orchestrator's /status shows these beside the zero capacities.
var (
	_ orchestrator.ReasonReporter      = (*Runtime)(nil)
	_ orchestrator.EngineErrorReporter = (*Runtime)(nil)
)

// Reasons implements orchestrator.ReasonReporter: the same one-line reason
// Status gives each model without capacity, without Status's NVML read.
func (rt *Runtime) Reasons() map[orchestrator.ModelKey]string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := map[orchestrator.ModelKey]string{}
	for _, m := range rt.order {
		if capa, _, _ := rt.capacityLocked(m); capa == 0 {
			out[orchestrator.ModelKey{Pipeline: m.Pipeline.Slug, Model: m.ModelID}] = rt.reasonLocked(m)
		}
	}
	return out
}

// EngineError implements orchestrator.EngineErrorReporter: why the runtime
// has not started while StartOrRetry retries it, "" once it has.
func (rt *Runtime) EngineError() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.engineErr
}

// Status is the runtime as an operator wants to see it on /status: GPUs,
// every runner with its state and why it is not serving, and capacity per
// model.
type Status struct {
	Instance string          `json:"instance_id"`
	GPUMode  string          `json:"gpu_mode"`
	GPUs     []gpu.GPUStatus `json:"gpus"`
	GPUError string          `json:"gpu_error,omitempty"`
	// EngineError says why the runtime has not started yet while
	// StartOrRetry retries it (e.g. the Docker engine is unreachable).
	EngineError string            `json:"engine_error,omitempty"`
	Models      []ModelStatus     `json:"models"`
	Containers  []ContainerStatus `json:"runners"`
}

// ModelStatus is one (pipeline, model). Free = Capacity − InUse is what
// Reserve can still hand out.
type ModelStatus struct {
	Pipeline string `json:"pipeline"`
	Model    string `json:"model_id"`
	Warm     bool   `json:"warm"`
	External bool   `json:"external"`
	Capacity int    `json:"capacity"`
	InUse    int    `json:"in_use"`
	Free     int    `json:"free"`
	Loading  int    `json:"loading"`
	Failed   int    `json:"failed"`
	Missed   int    `json:"missed_reservations"`
	Version  string `json:"runner_version,omitempty"`
	// Reason is set when capacity is zero and says why, e.g. a crash loop
	// with the runner's last log lines.
	Reason string `json:"reason,omitempty"`
}

// ContainerStatus is one runner record.
type ContainerStatus struct {
	Pipeline    string    `json:"pipeline"`
	Model       string    `json:"model_id"`
	Replica     int       `json:"replica"`
	State       State     `json:"state"`
	CrashLoop   bool      `json:"crash_loop"`
	ContainerID string    `json:"container_id,omitempty"`
	Name        string    `json:"name,omitempty"`
	URL         string    `json:"url,omitempty"`
	GPU         string    `json:"gpu,omitempty"`
	InFlight    int       `json:"in_flight"`
	Concurrency int       `json:"concurrency"`
	Restarts    int       `json:"restarts"`
	Failures    int       `json:"consecutive_failures"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	ReadyAt     time.Time `json:"ready_at,omitzero"`
	Version     string    `json:"version,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LogTail     []string  `json:"log_tail,omitempty"`
}

// Status takes a snapshot. It reads NVML, so it is not free: call it per
// /status request, not per job.
func (rt *Runtime) Status() Status {
	st := Status{Instance: rt.cfg.InstanceID, GPUMode: rt.inv.Mode()}
	gpus, err := rt.placer.Status()
	if err != nil {
		st.GPUError = err.Error()
	}
	st.GPUs = gpus
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st.EngineError = rt.engineErr
	for _, m := range rt.order {
		capa, inUse, version := rt.capacityLocked(m)
		ms := ModelStatus{Pipeline: m.Pipeline.Slug, Model: m.ModelID, Warm: m.Warm, External: m.external(),
			Capacity: capa, InUse: inUse, Free: capa - inUse, Missed: m.missed, Version: version}
		for _, r := range m.records {
			switch r.state {
			case Creating, Loading:
				ms.Loading++
			case Failed:
				ms.Failed++
			}
			cs := ContainerStatus{Pipeline: m.Pipeline.Slug, Model: m.ModelID, Replica: r.replica, State: r.state,
				CrashLoop: r.crashLoop && r.state == Failed, ContainerID: short(r.containerID), Name: r.name, URL: r.url,
				InFlight: r.inFlight, Concurrency: r.concurrency, Restarts: r.restarts, Failures: r.failures,
				StartedAt: r.startedAt, ReadyAt: r.readyAt, Version: r.version, LastError: r.lastError, LogTail: r.logTail}
			if r.alloc != nil {
				cs.GPU = r.alloc.GPU
			}
			st.Containers = append(st.Containers, cs)
		}
		if capa == 0 {
			ms.Reason = rt.reasonLocked(m)
		}
		st.Models = append(st.Models, ms)
	}
	return st
}

// reasonLocked says in one line why a model has no capacity.
func (rt *Runtime) reasonLocked(m *model) string {
	if rt.stopping {
		return "shutting down"
	}
	if rt.engineErr != "" && !m.external() {
		return rt.engineErr + "; retrying in the background"
	}
	for _, r := range m.records {
		if r.crashLoop && r.state == Failed {
			return fmt.Sprintf("crash loop: %d failures in a row, retrying every %s; last: %s",
				r.failures, rt.cfg.RestartBackoffMax, r.lastError)
		}
	}
	for _, r := range m.records {
		if r.state == Failed && r.lastError != "" {
			return "restarting after failure: " + r.lastError
		}
	}
	if !m.started && !m.Warm {
		return "cold: starts on the first request"
	}
	for _, r := range m.records {
		if r.state == Creating || r.state == Loading {
			return "loading"
		}
	}
	return "no runner serving"
}
