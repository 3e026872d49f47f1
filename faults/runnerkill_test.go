package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

const (
	slowJob        = 4 * time.Second // the runner's inference time: a kill lands mid-job
	promptEnd      = 2 * time.Second // kill → the tester's result; the job had 3.5 s left
	capacityWithin = 15 * time.Second
)

// killOutcome is what one runner-kill run measured.
type killOutcome struct {
	class      string        // tester's class/code of the job cut by the kill
	endedAfter time.Duration // from the kill to the tester's result
	capacity   error         // nil once capacity was back, with a replaced container
	next       string        // tester's outcome and error of the job after recovery
	left       []string      // the instance's containers after the orchestrator's shutdown
}

var errNoCapacityBack = errors.New("capacity never came back after the runner was killed")

// check returns every broken promise: the cut job classified as an
// orchestrator error and promptly, capacity back with a new container, the
// next job served, nothing left behind.
func (k killOutcome) check() error {
	var errs []error
	if !strings.HasPrefix(k.class, "orchestrator_error/http_5") {
		errs = append(errs, fmt.Errorf("job cut by the kill classified %q, want orchestrator_error/http_5xx", k.class))
	}
	if k.endedAfter > promptEnd {
		errs = append(errs, fmt.Errorf("job cut by the kill ended %s after it, want within %s", k.endedAfter, promptEnd))
	}
	if k.capacity != nil {
		errs = append(errs, k.capacity)
	}
	if k.next != "success -" {
		errs = append(errs, fmt.Errorf("job after the kill: %q, want success", k.next))
	}
	if len(k.left) > 0 {
		errs = append(errs, fmt.Errorf("containers left after shutdown: %v", k.left))
	}
	return errors.Join(errs...)
}

// probeOnce runs the tester binary for one round against o (the Livepeer
// off-chain protocol path: GetOrchestrator, then the job) and returns its
// row's "OUTCOME ERROR" and when the round was over.
func probeOnce(t *testing.T, o *orch, model string, running func(*proc)) (string, time.Time) {
	t.Helper()
	p := start(t, "tester", bin.tester, nil, "-region", "FRA", "-once", "-no-store", "-listen", "",
		"-orchestrators", o.Target(), "-models", "text-to-image:"+model,
		"-timeout.server", "30s", "-timeout.total", "40s")
	if running != nil {
		running(p)
	}
	if err := p.wait(60 * time.Second); err != nil {
		t.Fatalf("tester: %v\n%s", err, p.out.String())
	}
	ended := time.Now()
	if row, ok := testerRows(p.out.String())[o.Address]; ok {
		return row["OUTCOME"] + " " + row["ERROR"], ended
	}
	t.Fatalf("no result row for %s in the tester's table:\n%s", o.Address, p.out.String())
	return "", ended
}

// killRunnerMidJob runs an orchestrator binary with one docker-managed
// runner of slow jobs, has the tester binary send a job, SIGKILLs the runner
// container (found by the instance label) while the job runs, then measures
// what the promises are about.
func killRunnerMidJob(t *testing.T, orchBin string, env []string) killOutcome {
	c := dockerEngine(t)
	img := runnerImage(t, c)
	inst := instance(t, c)
	const model = "faults/slow"
	o := dockerOrchestrator(t, orchBin, env, img, inst, model, slowJob)
	waitFor(t, 30*time.Second, "the runner container serving", func() bool { n, _ := o.capacity(t); return n == 1 })

	var k killOutcome
	var killedAt time.Time
	var killed string
	var row string
	row, ended := probeOnce(t, o, model, func(*proc) {
		waitFor(t, 20*time.Second, "the tester's job running on the runner", func() bool { _, n := o.capacity(t); return n == 1 })
		time.Sleep(500 * time.Millisecond) // inside the inference, not at its edge
		list := containersOf(t, c, inst)
		if len(list) != 1 {
			t.Fatalf("%d containers of %s, want the one runner", len(list), inst)
		}
		killed = list[0].ID
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The engine answers a SIGKILL once the container is gone, by
		// when the orchestrator may have answered the job already.
		killedAt = time.Now()
		if err := c.ContainerKill(ctx, killed, "KILL"); err != nil {
			t.Fatalf("docker kill %s: %v", killed[:12], err)
		}
	})
	k.class = strings.Fields(row)[1]
	k.endedAfter = ended.Sub(killedAt)
	t.Logf("killed runner %s mid-job: tester says %q, %s after the kill", killed[:12], row, k.endedAfter.Round(time.Millisecond))

	// Capacity back means a new container serving, not the old one counted.
	begin := time.Now()
	k.capacity = errNoCapacityBack
	for time.Since(begin) < capacityWithin {
		if n, _ := o.capacity(t); n == 1 {
			st := o.runtimeStatus(t)
			list := containersOf(t, c, inst)
			if st.Runners[0].Restarts < 1 || len(list) != 1 || list[0].ID == killed || list[0].State != container.StateRunning {
				k.capacity = fmt.Errorf("capacity 1 but no replacement: restarts %d, containers %v", st.Runners[0].Restarts, list)
				break
			}
			k.capacity = nil
			t.Logf("capacity back after %s with container %s (last error: %s)", time.Since(begin).Round(time.Millisecond),
				list[0].ID[:12], st.Runners[0].LastError)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if k.capacity == nil {
		k.next, _ = probeOnce(t, o, model, nil)
	} else {
		st := o.runtimeStatus(t)
		t.Logf("%v within %s; runner %s, reason: %.120s", k.capacity, capacityWithin, st.Runners[0].State, st.Models[0].Reason)
	}

	if err := o.stop(30 * time.Second); err != nil {
		t.Errorf("orchestrator stopped with %v", err)
	}
	for _, ct := range containersOf(t, c, inst) {
		k.left = append(k.left, fmt.Sprintf("%s %v %s", ct.ID[:12], ct.Names, ct.State))
	}
	return k
}

// A runner container SIGKILLed mid-job under the orchestrator binary
// (-runners docker): the job ends at once as an orchestrator error in the
// tester's classes (no hang until a timeout; a failed job is never charged,
// the server charges only on success), the runtime notices and re-creates
// the runner so capacity comes back, the next job succeeds, and after the
// orchestrator's shutdown no container is left.
func TestRunnerContainerKilledMidJob(t *testing.T) {
	k := killRunnerMidJob(t, bin.orchestrator, nil)
	if err := k.check(); err != nil {
		t.Error(err)
	}
}

// Broken on purpose: the same kill with runner replacement switched off
// (the faultinject build of the orchestrator): capacity never comes back,
// and the check says so.
func TestRunnerContainerKilledWithoutReplacementLosesCapacity(t *testing.T) {
	k := killRunnerMidJob(t, orchestratorFaulty(t), []string{"LPGAUGE_FAULT_NO_RUNNER_REPLACEMENT=1"})
	err := k.check()
	t.Logf("replacement off: %v", err)
	if !errors.Is(err, errNoCapacityBack) {
		t.Errorf("with runner replacement disabled the check did not find capacity missing: %v", err)
	}
}
