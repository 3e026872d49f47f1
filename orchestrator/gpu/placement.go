package gpu

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Policy chooses among the GPUs a model fits on.
type Policy string

const (
	// Pack puts a model on the GPU with the least room that still fits, so
	// whole GPUs stay free for the big models that need them.
	Pack Policy = "pack"
	// Spread puts a model on the GPU with the most room, so co-located
	// models compete for compute as little as possible.
	Spread Policy = "spread"
)

// Placer decides which GPU a runner container goes on. It counts what it has
// placed itself (a container that is still loading has not allocated its VRAM
// yet, so NVML's free figure alone would over-place) and what NVML says is
// free (other processes, models larger than their estimate, VRAM a stopped
// container has not released yet); a GPU's room is the smaller of the two.
type Placer struct {
	inv      Inventory
	policy   Policy
	headroom uint64

	mu     sync.Mutex
	allocs []*Allocation
}

// Allocation is VRAM promised to one runner container on one GPU.
type Allocation struct {
	GPU   string // UUID, what Docker's device request names
	Index int
	Bytes uint64
	Owner string // container name, for status and error messages

	pids      []uint32
	releasing bool
	since     time.Time // releasing since
}

// NewPlacer places on inv's GPUs, keeping headroom bytes free on each GPU
// (CUDA contexts and fragmentation take some VRAM no estimate covers).
func NewPlacer(inv Inventory, policy Policy, headroom uint64) *Placer {
	if policy != Spread {
		policy = Pack
	}
	return &Placer{inv: inv, policy: policy, headroom: headroom}
}

// Place finds a GPU with bytes of room for owner, or returns an error
// wrapping ErrNoFit that says how much room each GPU has.
func (p *Placer) Place(owner string, bytes uint64) (*Allocation, error) {
	gpus, err := p.inv.GPUs()
	if err != nil {
		return nil, fmt.Errorf("read gpus: %w", err)
	}
	if len(gpus) == 0 {
		return nil, fmt.Errorf("%w: no GPUs (%s)", ErrNoFit, p.inv.Mode())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settle(gpus)
	type cand struct {
		g    GPU
		room uint64
	}
	var fits []cand
	var why []string
	for _, g := range gpus {
		room := p.room(g)
		if room >= bytes {
			fits = append(fits, cand{g, room})
		}
		why = append(why, fmt.Sprintf("gpu %d %s: %s room", g.Index, g.Name, human(room)))
	}
	if len(fits) == 0 {
		return nil, fmt.Errorf("%w: %s needs %s; %s", ErrNoFit, owner, human(bytes), strings.Join(why, ", "))
	}
	sort.SliceStable(fits, func(i, j int) bool {
		if p.policy == Spread {
			return fits[i].room > fits[j].room
		}
		return fits[i].room < fits[j].room
	})
	a := &Allocation{GPU: fits[0].g.UUID, Index: fits[0].g.Index, Bytes: bytes, Owner: owner}
	p.allocs = append(p.allocs, a)
	return a, nil
}

// room is what can still be promised on g: free VRAM as NVML sees it and as
// our own promises leave it, whichever is smaller, less the headroom.
func (p *Placer) room(g GPU) uint64 {
	var promised uint64
	for _, a := range p.allocs {
		if a.GPU == g.UUID {
			promised += a.Bytes
		}
	}
	free := g.MemoryFree
	if g.MemoryTotal > promised && g.MemoryTotal-promised < free {
		free = g.MemoryTotal - promised
	} else if g.MemoryTotal <= promised {
		free = 0
	}
	if free <= p.headroom {
		return 0
	}
	return free - p.headroom
}

// settle forgets released allocations whose processes NVML no longer lists:
// only then is their VRAM really back. Without known PIDs the fresh NVML free
// figure is the check, so they are forgotten at once.
func (p *Placer) settle(gpus []GPU) {
	byUUID := map[string]GPU{}
	for _, g := range gpus {
		byUUID[g.UUID] = g
	}
	p.allocs = slices.DeleteFunc(p.allocs, func(a *Allocation) bool {
		if !a.releasing {
			return false
		}
		g, ok := byUUID[a.GPU]
		if !ok || !g.ProcessesKnown || len(a.pids) == 0 {
			return true
		}
		return len(heldBy(g, a.pids)) == 0
	})
}

func heldBy(g GPU, pids []uint32) []Process {
	var out []Process
	for _, pr := range g.Processes {
		if slices.Contains(pids, pr.PID) {
			out = append(out, pr)
		}
	}
	return out
}

// SetPIDs records the host PIDs of a's container once it runs, so Release
// can tell when their VRAM is gone.
func (p *Placer) SetPIDs(a *Allocation, pids []uint32) {
	if a == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a.pids = slices.Clone(pids)
}

// Release gives a's VRAM back once its container has stopped. The room comes
// back when NVML no longer lists the container's processes on the GPU; until
// then the GPU is not offered to the next model. Safe on nil and twice.
func (p *Placer) Release(a *Allocation) {
	if a == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !a.releasing {
		a.releasing, a.since = true, time.Now()
	}
}

// GPUStatus is one GPU with what the placer has promised on it.
type GPUStatus struct {
	GPU
	Promised uint64      `json:"promised_bytes"`
	Room     uint64      `json:"room_bytes"`
	Owners   []string    `json:"containers"`
	Leaking  []LeakState `json:"releasing,omitempty"`
}

// LeakState is a stopped container whose processes still hold VRAM.
type LeakState struct {
	Owner   string        `json:"container"`
	Held    uint64        `json:"held_bytes"`
	For     time.Duration `json:"for_ns"`
	Process []uint32      `json:"pids"`
}

// Status reads the GPUs and reports each with its promises and any VRAM
// still held by stopped containers (the stuck-VRAM case operators hit after
// a CUDA OOM).
func (p *Placer) Status() ([]GPUStatus, error) {
	gpus, err := p.inv.GPUs()
	if err != nil {
		return nil, fmt.Errorf("read gpus: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settle(gpus)
	out := make([]GPUStatus, 0, len(gpus))
	for _, g := range gpus {
		s := GPUStatus{GPU: g, Room: p.room(g)}
		for _, a := range p.allocs {
			if a.GPU != g.UUID {
				continue
			}
			s.Promised += a.Bytes
			if !a.releasing {
				s.Owners = append(s.Owners, a.Owner)
				continue
			}
			ls := LeakState{Owner: a.Owner, For: time.Since(a.since)}
			for _, pr := range heldBy(g, a.pids) {
				ls.Held += pr.UsedMemory
				ls.Process = append(ls.Process, pr.PID)
			}
			s.Leaking = append(s.Leaking, ls)
		}
		out = append(out, s)
	}
	return out, nil
}

func human(b uint64) string { return fmt.Sprintf("%.1fGiB", float64(b)/float64(GiB)) }
