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
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/procgroup"
)

// ErrNotInstalled is returned when no clickhouse-server binary can be found.
var ErrNotInstalled = errors.New("clickhouse-server binary not found (run `make deps` to install Debian's clickhouse-server)")

// Server is a running private ClickHouse server.
type Server struct {
	Dir      string // root of data, logs and config
	TCPAddr  string // native protocol address, 127.0.0.1:port
	HTTPAddr string // HTTP interface address, 127.0.0.1:port
	// InterserverAddr is where other replicas fetch parts from (cluster
	// members only).
	InterserverAddr string
	opts            Options // as resolved: ports and binary fixed, for Restart
	proc            *procgroup.Proc
	keepDir         bool
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
	// Member, when set, makes the server one replica of a cluster.
	Member *Member
}

// Member is what a server needs to be one replica of a cluster with one
// shard: the cluster (every replica's native address), the ZooKeeper nodes
// that coordinate replication and ON CLUSTER DDL, and its own macros.
type Member struct {
	// Cluster is the name in remote_servers (what ON CLUSTER and
	// Distributed refer to).
	Cluster string
	// Replicas are the native host:port addresses of every replica of the
	// shard, this server's own included.
	Replicas []string
	// ZooKeeper lists host:port of each ZooKeeper node.
	ZooKeeper []string
	// Shard and Replica are the {shard} and {replica} macros. Shard
	// defaults to "01"; Replica must be unique in the shard.
	Shard, Replica string
	// InterserverPort serves part fetches to the other replicas; 0 picks a
	// free loopback port (kept across Restart).
	InterserverPort int
	// SessionTimeout is the ZooKeeper session timeout (default 5 s). A
	// killed replica's session must expire before it can come back, so a
	// short one keeps fault tests quick.
	SessionTimeout time.Duration
}

func (m *Member) validate() error {
	switch {
	case !chclient.ValidIdent(m.Cluster):
		return fmt.Errorf("cluster member: invalid cluster name %q", m.Cluster)
	case len(m.Replicas) == 0:
		return errors.New("cluster member: no replicas")
	case len(m.ZooKeeper) == 0:
		return errors.New("cluster member: no ZooKeeper nodes")
	case m.Replica == "" || strings.ContainsAny(m.Replica+m.Shard, "<>&'\"/{}"):
		return fmt.Errorf("cluster member: invalid replica %q or shard %q", m.Replica, m.Shard)
	}
	for _, a := range append(append([]string{}, m.Replicas...), m.ZooKeeper...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("cluster member: address %q: %w", a, err)
		}
	}
	return nil
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
	var member *Member
	if opts.Member != nil {
		m := *opts.Member
		if m.Shard == "" {
			m.Shard = "01"
		}
		if m.SessionTimeout == 0 {
			m.SessionTimeout = 5 * time.Second
		}
		if err := m.validate(); err != nil {
			return nil, err
		}
		if m.InterserverPort == 0 {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			m.InterserverPort = p
		}
		member = &m
	}
	s := &Server{keepDir: opts.Dir != ""}
	dir, err := procgroup.WorkDir(opts.Dir, "lpgauge-clickhouse-", "data", "tmp", "user_files", "format_schemas", "log")
	if err != nil {
		return nil, err
	}
	s.Dir = dir
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
	s.opts = Options{Dir: s.Dir, TCPPort: tcp, HTTPPort: httpPort, Binary: bin, StartTimeout: opts.StartTimeout, Member: member}
	config := configXML(s.Dir, tcp, httpPort)
	if member != nil {
		s.InterserverAddr = "127.0.0.1:" + strconv.Itoa(member.InterserverPort)
		config = strings.Replace(config, "</yandex>", memberXML(member), 1)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "config.xml"), []byte(config), 0o644); err != nil {
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
	cmd := exec.Command(bin, "--config-file="+filepath.Join(s.Dir, "config.xml"))
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = stdout, stdout
	// Killed with us if we die first: no server is ever left behind by a
	// crashed test or demo.
	if s.proc, err = procgroup.Start(cmd); err != nil {
		return nil, err
	}

	ready := func() bool { return ping(ctx, s.TCPAddr) && (member == nil || zooKeeperReady(ctx, s.TCPAddr)) }
	if err := s.proc.WaitReady(ctx, opts.StartTimeout, ready); err != nil {
		tail := s.logTail()
		s.Stop()
		return nil, fmt.Errorf("clickhouse-server on %s: %w: %s", s.TCPAddr, err, tail)
	}
	return s, nil
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

// zooKeeperReady checks that the server holds a ZooKeeper session: 18.16
// can crash on an ON CLUSTER statement sent before it has one.
func zooKeeperReady(ctx context.Context, addr string) bool {
	conn, err := chclient.Open(ctx, chclient.Config{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxOpenConns: 1})
	if err != nil {
		return false
	}
	defer conn.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var n uint64
	return conn.QueryRow(qctx, "SELECT count() FROM system.zookeeper WHERE path = '/'").Scan(&n) == nil
}

// PID of the server process.
func (s *Server) PID() int { return s.proc.PID() }

// Kill sends SIGKILL to the server and waits for it to exit, keeping its data
// directory: fault tests restart it with Restart.
func (s *Server) Kill() { s.proc.Kill() }

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and removes
// its directory unless it was given by the caller.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Stop(10 * time.Second)
	}
	if !s.keepDir && s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// Restart starts a fresh process on the same directory, ports and cluster
// membership (after Kill).
func (s *Server) Restart(ctx context.Context) (*Server, error) {
	ns, err := Start(ctx, s.opts)
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

// memberXML is the cluster part of config.xml (18.16 syntax), closing the
// <yandex> root it replaces. internal_replication: a Distributed insert writes
// each row to one replica of the shard and the Replicated* table copies it to
// the others, so a replica that is down catches up from its peers when it
// returns instead of missing what the Distributed table failed to send it.
func memberXML(m *Member) string {
	var b strings.Builder
	b.WriteString("  <remote_servers>\n    <" + m.Cluster + ">\n      <shard>\n        <internal_replication>true</internal_replication>\n")
	for _, r := range m.Replicas {
		host, port, _ := net.SplitHostPort(r)
		fmt.Fprintf(&b, "        <replica><host>%s</host><port>%s</port></replica>\n", host, port)
	}
	b.WriteString("      </shard>\n    </" + m.Cluster + ">\n  </remote_servers>\n  <zookeeper>\n")
	for i, z := range m.ZooKeeper {
		host, port, _ := net.SplitHostPort(z)
		fmt.Fprintf(&b, "    <node index=\"%d\"><host>%s</host><port>%s</port></node>\n", i+1, host, port)
	}
	fmt.Fprintf(&b, "    <session_timeout_ms>%d</session_timeout_ms>\n  </zookeeper>\n", m.SessionTimeout.Milliseconds())
	fmt.Fprintf(&b, "  <macros><shard>%s</shard><replica>%s</replica></macros>\n", m.Shard, m.Replica)
	fmt.Fprintf(&b, "  <interserver_http_host>127.0.0.1</interserver_http_host>\n  <interserver_http_port>%d</interserver_http_port>\n", m.InterserverPort)
	b.WriteString("  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n</yandex>\n")
	return b.String()
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

// StartCluster starts n servers in temporary directories that form cluster
// as one shard of n replicas (macros {shard}=01, {replica}=r1…rn),
// coordinated by the ZooKeeper nodes zk. Servers start concurrently; on an
// error the ones already up are stopped.
func StartCluster(ctx context.Context, cluster string, n int, zk []string) ([]*Server, error) {
	if n < 1 {
		return nil, fmt.Errorf("start cluster: %d replicas", n)
	}
	ports := make([]int, n)
	replicas := make([]string, n)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i], replicas[i] = p, "127.0.0.1:"+strconv.Itoa(p)
	}
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = Start(ctx, Options{TCPPort: ports[i], Member: &Member{
				Cluster: cluster, Replicas: replicas, ZooKeeper: zk, Replica: "r" + strconv.Itoa(i+1),
			}})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range servers {
			if s != nil {
				s.Stop()
			}
		}
		return nil, fmt.Errorf("start cluster %s: %w", cluster, err)
	}
	return servers, nil
}
