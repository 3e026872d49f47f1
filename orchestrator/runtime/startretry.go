package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/client"
)

// ErrEngineUnreachable marks a start that could not connect to the Docker
// engine (dockerd not running yet, a wrong DOCKER_HOST): a condition that
// fixes itself or is fixed without touching the orchestrator, so
// StartOrRetry keeps trying instead of failing the boot.
var ErrEngineUnreachable = errors.New("docker engine unreachable")

// faults switches safeguards off. Only builds with -tags faultinject set it
// (faultinject.go, from the environment), so the fault suite can show that
// its checks catch a runtime that does not recover; shipped binaries cannot.
var faults struct {
	noEngineRetry bool // StartOrRetry does not retry in the background
	noReplace     bool // a failed managed runner is never re-created
}

// StartOrRetry is Start for an orchestrator that must outlive its engine's
// absence. When the engine cannot be reached it starts the external runners
// (they need no engine), returns an error wrapping ErrEngineUnreachable, and
// keeps calling Start in the background, waiting RestartBackoff doubling up
// to RestartBackoffMax between attempts, until it succeeds or Shutdown stops
// it. Meanwhile managed models have capacity 0 and Status says why. Other
// errors are Start's, and nothing keeps running after them.
func (rt *Runtime) StartOrRetry(ctx context.Context) error {
	err := rt.Start(ctx)
	if err == nil || !client.IsErrConnectionFailed(err) {
		return err
	}
	err = fmt.Errorf("%w: %w", ErrEngineUnreachable, err)
	rt.mu.Lock()
	rt.engineErr = err.Error()
	for _, m := range rt.order {
		if m.external() {
			rt.startModelLocked(m)
		}
	}
	rt.mu.Unlock()
	if faults.noEngineRetry {
		return err
	}
	// Under rt.wg and rt.ctx: Shutdown ends the retries before it returns.
	rt.wg.Add(1)
	go func() { defer rt.wg.Done(); rt.retryStart(err.Error()) }()
	return err
}

// retryStart calls Start until it succeeds or the runtime shuts down. The
// caller has logged the first failure; a failure is logged again only when
// its text changes (the engine came up but the image is missing, say).
func (rt *Runtime) retryStart(logged string) {
	wait := rt.cfg.RestartBackoff
	for {
		t := time.NewTimer(wait)
		select {
		case <-rt.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(rt.ctx, 2*time.Minute)
		err := rt.Start(ctx)
		cancel()
		if rt.ctx.Err() != nil {
			return
		}
		if err == nil {
			rt.log.Info("docker engine reachable: runtime started")
			return
		}
		if client.IsErrConnectionFailed(err) {
			err = fmt.Errorf("%w: %w", ErrEngineUnreachable, err)
		}
		wait = min(2*wait, rt.cfg.RestartBackoffMax)
		rt.mu.Lock()
		rt.engineErr = err.Error()
		rt.mu.Unlock()
		if err.Error() != logged {
			logged = err.Error()
			rt.log.Error("runtime start failed; retrying", "err", err, "retry_in", wait)
		}
	}
}
