//go:build cgo

package gpu

import (
	"errors"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVML is the Inventory backed by the NVIDIA driver's libnvidia-ml.
type NVML struct {
	mu     sync.Mutex // NVML handles are safe, but Shutdown must not race reads
	lib    nvml.Interface
	driver string
	closed bool
}

// OpenSystem opens the machine's NVML library. Without a driver it returns
// the CPU inventory (and no error): an orchestrator on a laptop or in CI runs
// CPU runners instead of refusing to start.
func OpenSystem() (Inventory, error) { return Open(nvml.New()) }

// Open initialises lib (the real library or go-nvml's mock).
func Open(lib nvml.Interface) (Inventory, error) {
	switch ret := lib.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return CPU{Reason: "NVML library libnvidia-ml.so.1 not found (no NVIDIA driver); runners start without GPUs"}, nil
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return CPU{Reason: "NVIDIA driver not loaded; runners start without GPUs"}, nil
	default:
		return nil, fmt.Errorf("nvml init: %w", ret)
	}
	n := &NVML{lib: lib}
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		n.driver = v
	}
	return n, nil
}

// Mode implements Inventory.
func (n *NVML) Mode() string {
	count, ret := n.count()
	if ret != nil {
		return fmt.Sprintf("nvml: driver %s, device count unreadable: %v", n.driver, ret)
	}
	return fmt.Sprintf("nvml: driver %s, %d GPUs", n.driver, count)
}

func (n *NVML) count() (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return 0, errors.New("nvml closed")
	}
	c, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return 0, fmt.Errorf("device count: %w", ret)
	}
	return c, nil
}

// GPUs implements Inventory. A device that cannot be read at all fails the
// call (placement on a half-known machine is a guess); a metric the device
// does not support is Unknown.
func (n *NVML) GPUs() ([]GPU, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("nvml closed")
	}
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("device count: %w", ret)
	}
	out := make([]GPU, 0, count)
	for i := 0; i < count; i++ {
		d, ret := n.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("gpu %d handle: %w", i, ret)
		}
		g, err := readDevice(i, d)
		if err != nil {
			return nil, fmt.Errorf("gpu %d: %w", i, err)
		}
		out = append(out, g)
	}
	return out, nil
}

func readDevice(index int, d nvml.Device) (GPU, error) {
	g := GPU{Index: index, UtilizationGPU: Unknown, UtilizationMemory: Unknown, ComputeMajor: Unknown, ComputeMinor: Unknown}
	var ret nvml.Return
	// UUID and memory are what placement needs: without them the GPU is
	// unusable, so they are errors. Everything else is best effort.
	if g.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
		return GPU{}, fmt.Errorf("uuid: %w", ret)
	}
	mem, ret := d.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return GPU{}, fmt.Errorf("memory info: %w", ret)
	}
	g.MemoryTotal, g.MemoryFree, g.MemoryUsed = mem.Total, mem.Free, mem.Used
	if name, ret := d.GetName(); ret == nvml.SUCCESS {
		g.Name = name
	}
	if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
		g.UtilizationGPU, g.UtilizationMemory = int(u.Gpu), int(u.Memory)
	}
	if major, minor, ret := d.GetCudaComputeCapability(); ret == nvml.SUCCESS {
		g.ComputeMajor, g.ComputeMinor = major, minor
	}
	if procs, ret := d.GetComputeRunningProcesses(); ret == nvml.SUCCESS {
		g.ProcessesKnown = true
		for _, p := range procs {
			g.Processes = append(g.Processes, Process{PID: p.Pid, UsedMemory: p.UsedGpuMemory})
		}
	}
	return g, nil
}

// Close implements Inventory.
func (n *NVML) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %w", ret)
	}
	return nil
}
