// Package proctest runs the project's real binaries for benchmarks: it builds
// a command into a temporary directory, starts it, and reads its peak
// resident memory (VmHWM) from /proc, so memory figures are those of the
// binary alone and not of the test process that drives it.
package proctest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build compiles the main package pkg (e.g. "github.com/lpgauge/lpgauge/cmd/tester")
// into a temporary directory and returns the binary's path.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Process is a started binary.
type Process struct {
	Cmd    *exec.Cmd
	Stderr *os.File // its stderr, kept in a temporary file for failure messages
	done   chan error
}

// Start runs bin with args and env (added to the test's environment); the
// process is killed when the test ends if it still runs.
func Start(tb testing.TB, bin string, env []string, args ...string) *Process {
	tb.Helper()
	errf, err := os.CreateTemp(tb.TempDir(), "stderr")
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = nil, errf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	p := &Process{Cmd: cmd, Stderr: errf, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

// Tail returns the last n bytes of the process's stderr.
func (p *Process) Tail(n int64) string {
	b, _ := os.ReadFile(p.Stderr.Name())
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// PeakRSS reads VmHWM (peak resident set size) of a running process, in bytes.
func (p *Process) PeakRSS() (int64, error) { return VmHWM(p.Cmd.Process.Pid) }

// WaitTrackingPeak waits up to timeout for the process to exit on its own,
// reading VmHWM every 50 ms meanwhile; it returns the last reading (VmHWM
// only grows, so that is the peak up to the final moments) and the exit error.
func (p *Process) WaitTrackingPeak(timeout time.Duration) (int64, error) {
	var peak int64
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-p.done:
			p.done <- err
			return peak, err
		case <-deadline:
			return peak, fmt.Errorf("still running after %v", timeout)
		case <-tick.C:
			if v, err := p.PeakRSS(); err == nil && v > peak {
				peak = v
			}
		}
	}
}

// Stop sends SIGTERM and waits up to timeout for the exit.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		return fmt.Errorf("no exit %v after SIGTERM", timeout)
	}
}

// VmHWM reads the peak resident set size of pid from /proc, in bytes.
func VmHWM(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitHTTP polls url until it answers 200, the process exits, or timeout.
func (p *Process) WaitHTTP(tb testing.TB, url string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			tb.Fatalf("process exited before %s answered: %v\n%s", url, err, p.Tail(4000))
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s did not answer 200 within %v\n%s", url, timeout, p.Tail(4000))
}

// MiB converts bytes to MiB for ReportMetric.
func MiB(b int64) float64 { return float64(b) / (1 << 20) }
