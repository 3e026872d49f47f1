// Package chserver starts and stops a private ClickHouse server process: a
// temporary data directory, free loopback ports, stopped by PID. Tests and the
// demo use it so they never touch a system-wide server or assume ports
// 9000/8123 are free.
package chserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lpgauge/lpgauge/internal/chclient"
)

// ErrNotInstalled is returned when no clickhouse-server binary can be found.
var ErrNotInstalled = errors.New("clickhouse-server binary not found (run `make deps` to install Debian's clickhouse-server)")

// Server is a running private ClickHouse server.
type Server struct {
	Dir      string // root of data, logs and config
	TCPAddr  string // native protocol address, 127.0.0.1:port
	HTTPAddr string // HTTP interface address, 127.0.0.1:port
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	keepDir  bool
}

// Options configure Start.
type Options struct {
	// Dir holds data, logs and config. Empty means a new temporary directory
	// that Stop removes. A given Dir is kept, so data survives restarts.
	Dir string
	// TCPPort and HTTPPort: 0 picks free loopback ports.
	TCPPort, HTTPPort int
	// Binary overrides the clickhouse-server path.
	Binary string
	// StartTimeout bounds how long Start waits for the server to accept
	// connections (default 30 s).
	StartTimeout time.Duration
}

// FindBinary returns the path of the clickhouse-server binary.
func FindBinary() (string, error) {
	if p := os.Getenv("CLICKHOUSE_SERVER_BIN"); p != "" {
		return p, nil
	}
	for _, name := range []string{"clickhouse-server", "clickhouse"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start launches a server and waits until it accepts native connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	s := &Server{Dir: opts.Dir, keepDir: opts.Dir != "", done: make(chan struct{})}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "lpgauge-clickhouse-")
		if err != nil {
			return nil, fmt.Errorf("create clickhouse dir: %w", err)
		}
		s.Dir = d
	}
	abs, err := filepath.Abs(s.Dir)
	if err != nil {
		return nil, err
	}
	s.Dir = abs
	for _, sub := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("create clickhouse dir: %w", err)
		}
	}
	tcp, httpPort := opts.TCPPort, opts.HTTPPort
	if tcp == 0 {
		if tcp, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if httpPort == 0 {
		if httpPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	s.TCPAddr = "127.0.0.1:" + strconv.Itoa(tcp)
	s.HTTPAddr = "127.0.0.1:" + strconv.Itoa(httpPort)
	if err := os.WriteFile(filepath.Join(s.Dir, "config.xml"), []byte(configXML(s.Dir, tcp, httpPort)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "users.xml"), []byte(usersXML), 0o644); err != nil {
		return nil, err
	}
	stdout, err := os.Create(filepath.Join(s.Dir, "log", "stdout.log"))
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	s.cmd = exec.Command(bin, "--config-file="+filepath.Join(s.Dir, "config.xml"))
	s.cmd.Dir = s.Dir
	s.cmd.Stdout, s.cmd.Stderr = stdout, stdout
	// Own process group, and killed with us if we die first: no server is
	// ever left behind by a crashed test or demo.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.done) }()

	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("clickhouse-server exited during start (%v): %s", s.waitErr, s.logTail())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		default:
		}
		if ping(ctx, s.TCPAddr) {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("clickhouse-server did not accept connections on %s within %s: %s", s.TCPAddr, timeout, s.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ping checks that the native port answers a query: the port accepting TCP
// is not enough, the server opens it before it is ready.
func ping(ctx context.Context, addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	conn, err := chclient.Open(ctx, chclient.Config{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxOpenConns: 1})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// PID of the server process.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Kill sends SIGKILL to the server and waits for it to exit, keeping its data
// directory: fault tests restart it with Restart.
func (s *Server) Kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and removes
// its directory unless it was given by the caller.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.done:
		default:
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.done
			}
		}
	}
	if !s.keepDir && s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// Restart starts a fresh process on the same directory and ports (after Kill).
func (s *Server) Restart(ctx context.Context) (*Server, error) {
	tcp, _ := strconv.Atoi(s.TCPAddr[strings.LastIndex(s.TCPAddr, ":")+1:])
	httpPort, _ := strconv.Atoi(s.HTTPAddr[strings.LastIndex(s.HTTPAddr, ":")+1:])
	ns, err := Start(ctx, Options{Dir: s.Dir, TCPPort: tcp, HTTPPort: httpPort, Binary: s.cmd.Path})
	if err != nil {
		return nil, err
	}
	ns.keepDir = s.keepDir
	return ns, nil
}

func (s *Server) logTail() string {
	var b strings.Builder
	for _, f := range []string{"log/err.log", "log/stdout.log"} {
		data, _ := os.ReadFile(filepath.Join(s.Dir, f))
		if len(data) > 1500 {
			data = data[len(data)-1500:]
		}
		b.Write(data)
	}
	return strings.TrimSpace(b.String())
}

func configXML(dir string, tcp, httpPort int) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/log/server.log</log><errorlog>%[1]s/log/err.log</errorlog><size>10M</size><count>1</count></logger>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
</yandex>
`, dir, tcp, httpPort)
}

const usersXML = `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage><load_balancing>random</load_balancing></default>
    <readonly><readonly>2</readonly></readonly>
  </profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`
