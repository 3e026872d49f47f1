//go:build gpu

package gpu

import "testing"

// TestRealNVML lists the GPUs of the machine it runs on through the real
// NVML library, and fails when there are none: `make test-gpu` on a machine
// with an NVIDIA driver. It is built only with the gpu tag, so `make test`
// (CI has no GPU) neither runs nor skips it.
func TestRealNVML(t *testing.T) {
	inv, err := OpenSystem()
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	t.Logf("mode: %s", inv.Mode())
	gpus, err := inv.GPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) == 0 {
		t.Fatalf("no GPUs: %s", inv.Mode())
	}
	for _, g := range gpus {
		t.Logf("gpu %d %s %s: total %s free %s used %s util %d%%/%d%% cc %d.%d processes(known=%v) %v",
			g.Index, g.UUID, g.Name, human(g.MemoryTotal), human(g.MemoryFree), human(g.MemoryUsed),
			g.UtilizationGPU, g.UtilizationMemory, g.ComputeMajor, g.ComputeMinor, g.ProcessesKnown, g.Processes)
	}
	p := NewPlacer(inv, Pack, GiB)
	a, err := p.Place("probe", 1*GiB)
	t.Logf("placement of 1GiB: %+v %v", a, err)
}
