package faults

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// proc is one running binary: its output kept for failure messages, its
// exit awaited once.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // exit status, once done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs path with args; env is added to the test's environment. The
// process is SIGKILLed when the test ends if it is still running.
func start(t *testing.T, name, path string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Killed with the test binary if it dies first.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		// The suite runs the binaries as an operator should: with the house
		// flag names, so a deprecation warning here is a stale flag in a test.
		if out := p.out.String(); strings.Contains(out, "is deprecated: use -") {
			i := strings.Index(out, "is deprecated: use -")
			t.Errorf("%s was started with a deprecated flag (use the new name): %s", name, firstLine(out[strings.LastIndexByte(out[:i], '\n')+1:]))
		}
		if t.Failed() {
			t.Logf("--- output of %s (pid %d):\n%s", name, p.cmd.Process.Pid, tail(p.out.String(), 6000))
		}
	})
	return p
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to d for a clean exit.
func (p *proc) stop(d time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(d)
}

func (p *proc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %s", p.name, d)
		return nil
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// vmHWM reads VmHWM (peak RSS so far) of a running process, in bytes.
func vmHWM(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond every 50 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
	}
}

func get(url string) (int, string) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// orchestrator runs the reference orchestrator binary with CPU runners (or
// the given extra flags) on a free port and waits for /healthz.
type orch struct {
	*proc
	URL     string
	Op      string // the operator listener: /status, /metrics
	Address string
}

func startOrchestrator(t *testing.T, env []string, extra ...string) *orch {
	t.Helper()
	addr, op := freeAddr(t), freeAddr(t)
	args := append([]string{"-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", op}, extra...)
	o := &orch{proc: start(t, "orchestrator "+addr, bin.orchestrator, env, args...), URL: "http://" + addr, Op: "http://" + op}
	waitFor(t, 30*time.Second, "orchestrator "+addr+" answers /healthz", func() bool {
		if o.exited() {
			t.Fatalf("orchestrator exited: %v\n%s", o.err, o.out.String())
		}
		code, _ := get(o.URL + "/healthz")
		return code == http.StatusOK
	})
	_, st := get(o.Op + "/status")
	if m := regexp.MustCompile(`"eth_address":"(0x[0-9a-f]{40})"`).FindStringSubmatch(st); m != nil {
		o.Address = m[1]
	} else {
		t.Fatalf("no eth_address in /status: %s", st)
	}
	return o
}

// Target is the orchestrator as an -orchestrators entry.
func (o *orch) Target() string { return o.Address + "=" + o.URL }

var requestsRE = regexp.MustCompile(`(?m)^orchestrator_requests_total\{[^}]*\} (\S+)$`)

// served is how many AI requests the orchestrator has answered (every
// status), from its own /metrics: each is one probe the tester made.
func (o *orch) served(t *testing.T) int {
	t.Helper()
	code, body := get(o.Op + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("orchestrator /metrics: %d %s", code, body)
	}
	n := 0
	for _, m := range requestsRE.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		n += int(v)
	}
	return n
}

// stored returns the rows and distinct probe ids in db's probe_results.
func stored(t *testing.T, db *chtest.DB, where string) (rows, ids uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if where == "" {
		where = "1"
	}
	if err := db.Conn.QueryRow(ctx, "SELECT count(), uniqExact(probe_id) FROM "+db.Name+".probe_results WHERE "+where).Scan(&rows, &ids); err != nil {
		t.Fatalf("count stored rows: %v", err)
	}
	return rows, ids
}

// testerKey writes the well-known test key 0x…01 (tester id
// 0x7e5f4552091a69125d5dfcb7b8c2659029395bdf): a restarted tester keeps
// its identity, so its probe ids are the same as the first run's.
func testerKey(t *testing.T) string {
	t.Helper()
	path := t.TempDir() + "/key"
	if err := os.WriteFile(path, []byte(strings.Repeat("0", 63)+"1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testerRows reads the results table the tester prints with -once: each
// row's fields keyed by the header's column names. The pipeline column holds
// spaces ("Text to image"), so columns after it are counted from the end.
func testerRows(out string) map[string]map[string]string {
	rows := map[string]map[string]string{}
	var header []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "ORCHESTRATOR" {
			header = f
			continue
		}
		if header == nil || len(f) < len(header) || !strings.HasPrefix(f[0], "0x") || len(f[0]) != 42 {
			continue
		}
		row := map[string]string{}
		for i := range header {
			if i < 2 {
				row[header[i]] = f[i]
				continue
			}
			row[header[i]] = f[len(f)-(len(header)-i)]
		}
		rows[f[0]] = row
	}
	return rows
}
