package shard

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/zkserver"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/probe"
)

func plan(n int) []tester.Planned {
	pl, _ := probe.Lookup("text-to-image")
	var out []tester.Planned
	for i := 0; i < n; i++ {
		out = append(out, tester.Planned{Target: tester.Target{Address: fmt.Sprintf("0x%040x", i+1), ServiceURI: "https://o:8935"},
			Model: tester.Model{Pipeline: pl, Model: "stabilityai/sdxl-turbo"}})
	}
	return out
}

// Rendezvous hashing: a member that leaves moves only its own orchestrators,
// and the shares are roughly even.
func TestOwnerMovesOnlyTheLeaversShare(t *testing.T) {
	three, two := []string{"a", "b", "c"}, []string{"a", "b"}
	count := map[string]int{}
	for _, p := range plan(600) {
		o3, o2 := Owner(three, p.Target.Address), Owner(two, p.Target.Address)
		count[o3]++
		if o3 != "c" && o3 != o2 {
			t.Fatalf("%s moved from %s to %s when c left", p.Target.Address, o3, o2)
		}
	}
	for _, m := range three {
		if count[m] < 150 || count[m] > 250 {
			t.Errorf("member %s owns %d of 600, want about 200", m, count[m])
		}
	}
	if Owner(nil, "x") != "" {
		t.Error("no members must own nothing")
	}
}

func startZK(t *testing.T) string {
	t.Helper()
	zks, err := zkserver.Start(context.Background(), zkserver.Options{})
	if err != nil {
		t.Fatalf("start ZooKeeper: %v", err)
	}
	t.Cleanup(zks.Stop)
	return zks.Addr
}

func open(t *testing.T, addr, id string, sweep time.Duration) *Shard {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{Servers: []string{addr}, Region: "FRA", ID: id, SessionTimeout: time.Second, Sweep: sweep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Two instances racing for every probe of a slot: each probe is claimed
// exactly once; the next slot's claims are separate.
func TestClaimNowIsExactlyOnceAcrossInstances(t *testing.T) {
	addr := startZK(t)
	a, b := open(t, addr, "a", 0), open(t, addr, "b", 0)
	slot := time.Unix(1_800_000_000, 0)
	ps := plan(100)
	won := make([]int, len(ps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range []*Shard{a, b} {
		for i, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.ClaimNow(context.Background(), slot, p) {
					mu.Lock()
					won[i]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for i, n := range won {
		if n != 1 {
			t.Errorf("probe %d claimed %d times, want 1", i, n)
		}
	}
	if !a.ClaimNow(context.Background(), slot.Add(time.Minute), ps[0]) {
		t.Error("the next slot's claim of the same probe was refused")
	}
}

// An instance's own share is claimed at once; another member's waits for
// the sweep, so a live owner gets its share. A member that left is out of
// the next slot's assignment.
func TestClaimWaitsForTheSweepOnOthersShare(t *testing.T) {
	addr := startZK(t)
	a, b := open(t, addr, "a", 500*time.Millisecond), open(t, addr, "b", 500*time.Millisecond)
	slot := time.Unix(1_800_000_000, 0)
	var theirs tester.Planned
	// a's sweep counts from its first look at the slot, here.
	aFirst := time.Now()
	for _, p := range plan(20) {
		if !a.Mine(slot, p) {
			theirs = p
			break
		}
	}
	start := time.Now()
	if !b.Claim(context.Background(), slot, theirs) {
		t.Fatal("the owner could not claim its own probe")
	}
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Errorf("own share claimed after %s, want at once", took)
	}
	if a.Claim(context.Background(), slot, theirs) {
		t.Fatal("a probe the owner claimed was claimed again")
	}
	// Measured from a's first look at the slot, where its sweep starts (b's
	// claim above took some of it, more under load).
	if took := time.Since(aFirst); took < 500*time.Millisecond {
		t.Errorf("another member's probe tried %s after this member's first look at the slot, want after the 500ms sweep", took)
	}
	b.Close()
	next := slot.Add(time.Minute)
	for deadline := time.Now().Add(10 * time.Second); ; next = next.Add(time.Minute) {
		if a.Mine(next, theirs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a member that left still owns its share")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A claim whose answer was lost is settled once, however many resolvers
// race for it (Close resolves while the background loop may be resolving
// the same claims): one orphan call, so one excused row per probe. Both
// recorded it before, which doubled rows when a tester stopped under load.
func TestLostClaimIsRecordedOnceWhenResolversRace(t *testing.T) {
	s := open(t, startZK(t), "a", 0)
	slot := time.Unix(1_800_000_000, 0)
	ps := plan(200)
	var mu sync.Mutex
	orphans := map[string]int{}
	s.OnOrphan(func(_ time.Time, p tester.Planned) {
		mu.Lock()
		orphans[p.Target.Address]++
		mu.Unlock()
	})
	for _, p := range ps {
		if !s.ClaimNow(context.Background(), slot, p) {
			t.Fatalf("claim of %s refused", p.Target.Address)
		}
	}
	// Every create landed but, as far as this instance knows, its answer
	// was lost.
	s.mu.Lock()
	for _, p := range ps {
		s.pending[path.Join(s.claimsDir(), strconv.FormatInt(slot.Unix(), 10), ClaimName(p))] = pendingClaim{slot: slot, p: p}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.resolve() }()
	}
	wg.Wait()
	for _, p := range ps {
		if n := orphans[p.Target.Address]; n != 1 {
			t.Errorf("%s recorded %d times, want once", p.Target.Address, n)
		}
	}
}
