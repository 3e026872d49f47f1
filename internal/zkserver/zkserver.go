// Package zkserver starts and stops a private ZooKeeper server process from
// Debian's zookeeper package: a temporary data directory, a free loopback
// port, stopped by PID. Replicated ClickHouse tests use it for replication
// and ON CLUSTER DDL; nothing here touches a system-wide ZooKeeper.
package zkserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/internal/procgroup"
)

// ErrNotInstalled is returned when java or the ZooKeeper jar is missing.
var ErrNotInstalled = errors.New("zookeeper not found (run `make deps`: it installs Debian's zookeeper, which brings default-jre)")

// Jar is where Debian's libzookeeper-java puts the server. Its manifest
// names every dependency jar under /usr/share/java, so it is the whole
// classpath.
const Jar = "/usr/share/java/zookeeper.jar"

// mainClass runs one standalone server from a config file.
const mainClass = "org.apache.zookeeper.server.ZooKeeperServerMain"

// Options configure Start.
type Options struct {
	// Dir holds the config, data and log. Empty means a new temporary
	// directory that Stop removes.
	Dir string
	// Port of the client port; 0 picks a free loopback port.
	Port int
	// Java and Classpath override the java binary and the classpath
	// (ZOOKEEPER_JAVA / ZOOKEEPER_CLASSPATH in the environment do too).
	Java, Classpath string
	// StartTimeout bounds how long Start waits for the server to answer
	// (default 30 s).
	StartTimeout time.Duration
}

// Server is a running private ZooKeeper.
type Server struct {
	Dir  string
	Addr string // client address, 127.0.0.1:port
	proc *procgroup.Proc
	keep bool
}

// Find returns the java binary and the classpath to run the server with.
func Find() (java, classpath string, err error) {
	java = os.Getenv("ZOOKEEPER_JAVA")
	if java == "" {
		if java, err = exec.LookPath("java"); err != nil {
			return "", "", fmt.Errorf("%w: no java on PATH", ErrNotInstalled)
		}
	}
	classpath = os.Getenv("ZOOKEEPER_CLASSPATH")
	if classpath == "" {
		if _, err := os.Stat(Jar); err != nil {
			return "", "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
		classpath = Jar
	}
	return java, classpath, nil
}

// Start launches a standalone server and waits until it serves requests.
func Start(ctx context.Context, opts Options) (*Server, error) {
	java, cp := opts.Java, opts.Classpath
	if java == "" || cp == "" {
		fj, fcp, err := Find()
		if err != nil {
			return nil, err
		}
		if java == "" {
			java = fj
		}
		if cp == "" {
			cp = fcp
		}
	}
	s := &Server{keep: opts.Dir != ""}
	dir, err := procgroup.WorkDir(opts.Dir, "lpgauge-zookeeper-", "data")
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	port := opts.Port
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	// tickTime 500 ms lets clients ask for sessions down to 1 s, so a killed
	// ClickHouse replica's session expires quickly. The admin server (Jetty
	// on 8080 by default) is off: it is not needed and the port may be taken.
	cfg := fmt.Sprintf(`tickTime=500
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=srvr
`, filepath.Join(s.Dir, "data"), port)
	cfgPath := filepath.Join(s.Dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(s.Dir, "zookeeper.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(java, "-Xmx256m", "-cp", cp, mainClass, cfgPath)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if s.proc, err = procgroup.Start(cmd); err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}

	if err := s.proc.WaitReady(ctx, opts.StartTimeout, func() bool { return Serving(s.Addr) }); err != nil {
		tail := s.logTail()
		s.Stop()
		return nil, fmt.Errorf("zookeeper on %s: %w: %s", s.Addr, err, tail)
	}
	return s, nil
}

// Serving reports whether the server at addr serves client requests. It
// asks "srvr", not "ruok": ruok answers imok as soon as the port is open,
// while the server still closes client sessions during its first snapshot,
// and ClickHouse 18.16 can crash on a DDL sent while its session fails.
func Serving(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "Zookeeper version:")
}

// PID of the server process.
func (s *Server) PID() int { return s.proc.PID() }

// Stop terminates the server (SIGTERM, then SIGKILL after 5 s) and removes
// its directory unless the caller gave it.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Stop(5 * time.Second)
	}
	if !s.keep && s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "zookeeper.log"))
	if len(data) > 1500 {
		data = data[len(data)-1500:]
	}
	return strings.TrimSpace(string(data))
}
