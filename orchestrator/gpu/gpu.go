// Package gpu reads the machine's NVIDIA GPUs through NVML and places runner
// containers on them by free VRAM, so an orchestrator never starts a model on
// a GPU that cannot hold it.
package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// GPU is one device as NVML reports it at the moment of reading. Metrics the
// device does not support are Unknown (-1), never a failure: consumer cards
// and MIG slices leave several of them out.
type GPU struct {
	Index             int       `json:"index"`
	UUID              string    `json:"uuid"`
	Name              string    `json:"name"`
	MemoryTotal       uint64    `json:"memory_total_bytes"`
	MemoryFree        uint64    `json:"memory_free_bytes"`
	MemoryUsed        uint64    `json:"memory_used_bytes"`
	UtilizationGPU    int       `json:"utilization_gpu_percent"`    // Unknown when not supported
	UtilizationMemory int       `json:"utilization_memory_percent"` // Unknown when not supported
	ComputeMajor      int       `json:"compute_major"`              // Unknown when not supported
	ComputeMinor      int       `json:"compute_minor"`              // Unknown when not supported
	Processes         []Process `json:"processes"`                  // nil when not supported
	ProcessesKnown    bool      `json:"processes_known"`
}

// Unknown marks a metric the device or driver does not report.
const Unknown = -1

// Process is a compute process holding VRAM on a GPU. PIDs are host PIDs, so
// they match what Docker reports for a container's processes.
type Process struct {
	PID        uint32 `json:"pid"`
	UsedMemory uint64 `json:"used_memory_bytes"`
}

// Inventory lists the GPUs. Every call reads the devices again: placement must
// see VRAM freed (or leaked) by containers that stopped a moment ago.
type Inventory interface {
	GPUs() ([]GPU, error)
	// Mode says in one line how GPUs are read ("nvml: driver …, 8 GPUs") or
	// why there are none ("cpu: …"), for logs and the status endpoint.
	Mode() string
	Close() error
}

// CPU is the inventory of a machine without an NVIDIA driver: no GPUs, and
// runners start without device requests.
type CPU struct{ Reason string }

// GPUs implements Inventory.
func (CPU) GPUs() ([]GPU, error) { return nil, nil }

// Mode implements Inventory.
func (c CPU) Mode() string { return "cpu: " + c.Reason }

// Close implements Inventory.
func (CPU) Close() error { return nil }

// ErrNoFit means no GPU has enough free VRAM for the model right now.
var ErrNoFit = errors.New("no GPU has enough free VRAM")

// GiB is 2^30 bytes, the unit operators think in.
const GiB = uint64(1) << 30

// Estimates are the VRAM a runner container of a model needs, used for
// placement before the model has loaded. A model entry wins over its
// pipeline's, which wins over Default.
type Estimates struct {
	ByModel    map[string]uint64 // key: model id, e.g. "ByteDance/SDXL-Lightning"
	ByPipeline map[string]uint64 // key: pipeline slug, e.g. "text-to-image"
	Default    uint64
}

// DefaultEstimates are conservative guesses per pipeline for the models
// ai-runner ships with; operators should set their own per model. LLM is
// high because vLLM preallocates GPU_MEMORY_UTILIZATION (0.85) of the card.
func DefaultEstimates() Estimates {
	return Estimates{
		ByModel: map[string]uint64{},
		ByPipeline: map[string]uint64{
			"text-to-image":       20 * GiB,
			"image-to-image":      20 * GiB,
			"image-to-video":      24 * GiB,
			"upscale":             16 * GiB,
			"audio-to-text":       12 * GiB,
			"segment-anything-2":  8 * GiB,
			"llm":                 68 * GiB,
			"image-to-text":       12 * GiB,
			"text-to-speech":      8 * GiB,
			"live-video-to-video": 24 * GiB,
		},
		Default: 16 * GiB,
	}
}

// For returns the estimate for one (pipeline, model).
func (e Estimates) For(pipeline, model string) uint64 {
	if b, ok := e.ByModel[model]; ok {
		return b
	}
	if b, ok := e.ByPipeline[pipeline]; ok {
		return b
	}
	return e.Default
}

// ParseEstimates reads overrides such as
// "text-to-image=18GiB,meta-llama/Llama-3.1-8B-Instruct=40GiB,default=12GiB"
// on top of base. A key that is a pipeline slug sets the pipeline's estimate;
// any other key is a model id.
func ParseEstimates(s string, base Estimates, pipelines []string) (Estimates, error) {
	out := Estimates{ByModel: map[string]uint64{}, ByPipeline: map[string]uint64{}, Default: base.Default}
	for k, v := range base.ByModel {
		out.ByModel[k] = v
	}
	for k, v := range base.ByPipeline {
		out.ByPipeline[k] = v
	}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	isPipeline := map[string]bool{}
	for _, p := range pipelines {
		isPipeline[p] = true
	}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || k == "" {
			return Estimates{}, fmt.Errorf("vram estimate %q: want key=size", item)
		}
		b, err := ParseBytes(v)
		if err != nil {
			return Estimates{}, fmt.Errorf("vram estimate %q: %w", item, err)
		}
		switch {
		case k == "default":
			out.Default = b
		case isPipeline[k]:
			out.ByPipeline[k] = b
		default:
			out.ByModel[k] = b
		}
	}
	return out, nil
}

// ParseBytes reads "24GiB", "512MiB", "24G" (GiB too: nobody means 10^9 for
// VRAM) or a plain byte count.
func ParseBytes(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   uint64
	}{{"GiB", GiB}, {"MiB", 1 << 20}, {"G", GiB}, {"M", 1 << 20}, {"B", 1}}
	mult := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("size %q: want a number with GiB or MiB", s)
	}
	return uint64(f * float64(mult)), nil
}
