// Package procgroup runs a child process in its own process group that dies
// with its parent (SIGKILL on parent death), so no test, demo or helper
// server is ever left behind, and stops it politely: SIGTERM to the whole
// group, SIGKILL after a grace period.
package procgroup

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"os"

	"strings"

	"path/filepath"

	"errors"

	"context"
)

// Proc is a started child process.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts cmd in a new process group that is killed if this process dies.
func Start(cmd *exec.Cmd) (*Proc, error) {
	// Own process group: a terminal's Ctrl-C reaches only the parent, which
	// then stops children in order; Pdeathsig covers a parent that crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// PID of the process (and of its group).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error; valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the group and waits for the process to exit.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM to the group, then SIGKILL after grace, and waits.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// WorkDir prepares the directory a child server keeps its files in: dir
// when given (the caller keeps it), else a fresh temporary one named after
// prefix (the caller removes it when the server stops). It returns the
// absolute path, with each of subdirs created inside.
func WorkDir(dir, prefix string, subdirs ...string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", prefix)
		if err != nil {
			return "", fmt.Errorf("create %s dir: %w", strings.TrimSuffix(prefix, "-"), err)
		}
		dir = d
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("work dir %s: %w", dir, err)
	}
	for _, sub := range subdirs {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o755); err != nil {
			return "", fmt.Errorf("create %s: %w", filepath.Join(abs, sub), err)
		}
	}
	return abs, nil
}

// ErrExited is wrapped by WaitReady when the child exits before it is ready.
var ErrExited = errors.New("exited during start")

// WaitReady polls ready every 100 ms until it reports true, and fails when
// the child exits first, ctx ends, or timeout (30 s when 0) passes: a child
// server's port opening is not the server being ready, so callers say what
// ready means.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration, ready func() bool) error {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.Done():
			return fmt.Errorf("%w (%v)", ErrExited, p.Err())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
