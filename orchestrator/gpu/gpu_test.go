package gpu

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// fakeH100s is go-nvml's 8 × H100 server with free memory and compute
// processes the test controls (the stock mock reports 0 free and leaves
// utilisation and processes unimplemented).
type fakeH100s struct {
	*server.Server
	mu    sync.Mutex
	used  []uint64 // per GPU
	procs [][]nvml.ProcessInfo
}

func newFakeH100s(t *testing.T, usedGiB ...uint64) *fakeH100s {
	t.Helper()
	f := &fakeH100s{Server: dgxh100.New(), used: make([]uint64, 8), procs: make([][]nvml.ProcessInfo, 8)}
	for i, u := range usedGiB {
		f.used[i] = u * GiB
	}
	for i, d := range f.Devices {
		dev := d.(*server.Device)
		dev.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			f.mu.Lock()
			defer f.mu.Unlock()
			total := dev.MemoryInfo.Total
			return nvml.Memory{Total: total, Used: f.used[i], Free: total - f.used[i]}, nvml.SUCCESS
		}
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
		}
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]nvml.ProcessInfo(nil), f.procs[i]...), nvml.SUCCESS
		}
	}
	return f
}

func (f *fakeH100s) set(i int, usedGiB uint64, procs ...nvml.ProcessInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.used[i], f.procs[i] = usedGiB*GiB, procs
}

func open(t *testing.T, lib nvml.Interface) Inventory {
	t.Helper()
	inv, err := Open(lib)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	return inv
}

// The status endpoint shows what an operator checks with nvidia-smi: names,
// UUIDs, memory, compute capability; unsupported utilisation is unknown,
// not an error that hides the GPU.
func TestInventoryReadsEveryGPU(t *testing.T) {
	inv := open(t, newFakeH100s(t, 10))
	gpus, err := inv.GPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(gpus))
	}
	g := gpus[0]
	if g.Name != "NVIDIA H100 80GB HBM3" || !strings.HasPrefix(g.UUID, "GPU-") {
		t.Errorf("gpu 0 = %q %q", g.Name, g.UUID)
	}
	if g.MemoryTotal != 80*GiB || g.MemoryUsed != 10*GiB || g.MemoryFree != 70*GiB {
		t.Errorf("gpu 0 memory total/used/free = %d/%d/%d", g.MemoryTotal, g.MemoryUsed, g.MemoryFree)
	}
	if g.ComputeMajor != 9 || g.ComputeMinor != 0 {
		t.Errorf("compute capability %d.%d, want 9.0", g.ComputeMajor, g.ComputeMinor)
	}
	if g.UtilizationGPU != Unknown {
		t.Errorf("unsupported utilisation reads %d, want Unknown", g.UtilizationGPU)
	}
	if !strings.Contains(inv.Mode(), "8 GPUs") {
		t.Errorf("mode %q does not count the GPUs", inv.Mode())
	}
}

// Without a driver the orchestrator must still start, on CPU, and say why.
func TestNoDriverMeansCPUMode(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	inv := open(t, lib)
	gpus, err := inv.GPUs()
	if err != nil || len(gpus) != 0 {
		t.Fatalf("GPUs() = %v, %v; want none, nil", gpus, err)
	}
	if !strings.HasPrefix(inv.Mode(), "cpu:") || !strings.Contains(inv.Mode(), "libnvidia-ml") {
		t.Errorf("mode %q does not say CPU mode and why", inv.Mode())
	}
}

// Other init failures (driver/library mismatch, no permission) are not
// silently turned into CPU mode: an operator with GPUs must see them.
func TestBrokenDriverIsAnError(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_NO_PERMISSION }}
	if _, err := Open(lib); !errors.Is(err, nvml.ERROR_NO_PERMISSION) {
		t.Fatalf("Open = %v, want ERROR_NO_PERMISSION", err)
	}
}

func TestPlacementByFreeVRAM(t *testing.T) {
	// GPU 3 has the least room that fits 30 GiB (40 free); 5 has 50 free.
	f := newFakeH100s(t, 70, 70, 70, 40, 70, 30, 70, 70)
	p := NewPlacer(open(t, f), Pack, 0)
	a, err := p.Place("sdxl", 30*GiB)
	if err != nil {
		t.Fatal(err)
	}
	if a.Index != 3 {
		t.Errorf("pack placed on gpu %d, want 3", a.Index)
	}
	s := NewPlacer(open(t, newFakeH100s(t, 70, 70, 70, 40, 70, 30, 70, 70)), Spread, 0)
	if a, err := s.Place("sdxl", 30*GiB); err != nil || a.Index != 5 {
		t.Errorf("spread placed on %v, %v; want gpu 5", a, err)
	}
}

// Several models (and several replicas of one) share a GPU while they fit;
// a model that loads slowly still counts before NVML sees its VRAM.
func TestSeveralModelsPerGPU(t *testing.T) {
	f := newFakeH100s(t, 0, 80, 80, 80, 80, 80, 80, 80) // only GPU 0 is free
	p := NewPlacer(open(t, f), Pack, 0)
	for _, m := range []struct {
		owner string
		gib   uint64
	}{{"t2i-a", 20}, {"t2i-b", 20}, {"llm", 30}, {"sam2", 8}} {
		a, err := p.Place(m.owner, m.gib*GiB)
		if err != nil {
			t.Fatalf("place %s: %v", m.owner, err)
		}
		if a.Index != 0 {
			t.Fatalf("%s on gpu %d, want 0", m.owner, a.Index)
		}
	}
	// 78 GiB promised: 2 GiB left even though NVML still says 80 free.
	if _, err := p.Place("upscale", 4*GiB); !errors.Is(err, ErrNoFit) {
		t.Fatalf("fifth model placed: %v", err)
	}
}

// Refusal says which model needed how much and what each GPU has, so the
// operator can fix the estimate or the model list.
func TestRefusalWhenNothingFits(t *testing.T) {
	f := newFakeH100s(t, 60, 60, 60, 60, 60, 60, 60, 60)
	p := NewPlacer(open(t, f), Pack, 2*GiB)
	_, err := p.Place("llm-70b", 40*GiB)
	if !errors.Is(err, ErrNoFit) {
		t.Fatalf("err = %v, want ErrNoFit", err)
	}
	for _, want := range []string{"llm-70b needs 40.0GiB", "gpu 7 NVIDIA H100 80GB HBM3: 18.0GiB room"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q lacks %q", err, want)
		}
	}
	cpu := NewPlacer(CPU{Reason: "no driver"}, Pack, 0)
	if _, err := cpu.Place("x", 1); !errors.Is(err, ErrNoFit) || !strings.Contains(err.Error(), "no driver") {
		t.Errorf("CPU placement = %v", err)
	}
}

// A stopped container's VRAM only comes back when its processes are gone:
// a runner stuck after a CUDA OOM keeps the next model off that GPU, and the
// status shows who holds it.
func TestSlotReusedOnlyAfterVRAMReleased(t *testing.T) {
	f := newFakeH100s(t, 0, 80, 80, 80, 80, 80, 80, 80)
	p := NewPlacer(open(t, f), Pack, 0)
	a, err := p.Place("i2v", 60*GiB)
	if err != nil {
		t.Fatal(err)
	}
	p.SetPIDs(a, []uint32{4242})
	f.set(0, 60, nvml.ProcessInfo{Pid: 4242, UsedGpuMemory: 60 * GiB})
	p.Release(a)
	if _, err := p.Place("i2v-again", 60*GiB); !errors.Is(err, ErrNoFit) {
		t.Fatalf("placed while the stopped runner still holds VRAM: %v", err)
	}
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	if l := st[0].Leaking; len(l) != 1 || l[0].Owner != "i2v" || l[0].Held != 60*GiB {
		t.Errorf("status does not show the held VRAM: %+v", st[0])
	}
	f.set(0, 0) // process exited, driver freed its memory
	if b, err := p.Place("i2v-again", 60*GiB); err != nil || b.Index != 0 {
		t.Fatalf("after release: %v, %v", b, err)
	}
}

func TestParseEstimates(t *testing.T) {
	e, err := ParseEstimates("text-to-image=18GiB, meta-llama/Llama-3.1-8B=40GiB,default=512MiB", DefaultEstimates(), []string{"text-to-image", "llm"})
	if err != nil {
		t.Fatal(err)
	}
	if e.For("text-to-image", "x") != 18*GiB || e.For("llm", "meta-llama/Llama-3.1-8B") != 40*GiB || e.For("nope", "y") != 512<<20 {
		t.Errorf("estimates %+v", e)
	}
	if DefaultEstimates().ByPipeline["text-to-image"] != 20*GiB {
		t.Error("overrides changed the defaults")
	}
	for _, bad := range []string{"text-to-image", "x=lots", "=3GiB"} {
		if _, err := ParseEstimates(bad, DefaultEstimates(), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
