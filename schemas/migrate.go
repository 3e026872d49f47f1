// Package schemas holds the project's ClickHouse schema as embedded, ordered
// migrations and the migrator that applies them. Every statement runs on
// ClickHouse 18.16 and on current releases.
package schemas

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// SplitMarker separates statements inside one migration file: ClickHouse
// takes one statement per query.
const SplitMarker = "--migration:split"

// Migration is one embedded file.
type Migration struct {
	Version    int
	Name       string
	Statements []string // templated, not yet rendered
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version number and an underscore", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, name, v)
		}
		seen[v] = name
		data, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		m := Migration{Version: v, Name: strings.TrimSuffix(name, ".sql")}
		for _, part := range strings.Split(string(data), SplitMarker) {
			if stmt := strings.TrimSpace(stripComments(part)); stmt != "" {
				m.Statements = append(m.Statements, stmt)
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// stripComments drops whole-line SQL comments so a file may start with prose.
func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Options select the database and the engine variant.
type Options struct {
	Database string
	// Cluster, when set, renders the replicated variant of every migration
	// on the named cluster (remote_servers in the server config): each table
	// becomes a Replicated* engine named <table>_local, created ON CLUSTER,
	// with a Distributed table under the plain name over it, so writers and
	// readers use <db>.<table> in both variants. Empty means one server.
	Cluster string
	// Timeout bounds each statement (default 60 s). ON CLUSTER statements
	// wait for every replica, so give a cluster some room.
	Timeout time.Duration
}

// templateData is what migration files may reference:
//
//	{{.DB}}                          the database
//	{{.Cluster}}                     the cluster name, empty on one server (for {{if .Cluster}})
//	{{.OnCluster}}                   "ON CLUSTER <name>" or nothing
//	{{.Local "t"}}                   the name of the table that stores rows: t, or t_local on a cluster
//	{{.Engine "t" "MergeTree"}}      MergeTree() or ReplicatedMergeTree('<zk path of t>', '{replica}');
//	                                 extra arguments are the engine's own: {{.Engine "t" "ReplacingMergeTree" "ver"}}
//	{{.Distributed "t"}}             on a cluster, the CREATE of the Distributed table t over t_local;
//	                                 nothing on one server (an empty statement is skipped)
type templateData struct {
	DB      string
	Cluster string
}

// OnCluster renders the ON CLUSTER clause of a DDL statement.
func (d templateData) OnCluster() string {
	if d.Cluster == "" {
		return ""
	}
	return "ON CLUSTER " + d.Cluster
}

// Local names the table that holds the rows on each server.
func (d templateData) Local(table string) string {
	if d.Cluster == "" {
		return table
	}
	return table + "_local"
}

// Engine renders a MergeTree-family engine, replicated on a cluster. The
// ZooKeeper path names the shard, database and logical table, so two
// databases on one cluster (tests, staging) never share replication state.
func (d templateData) Engine(table, family string, args ...string) (string, error) {
	if !mergeTreeFamilies[family] {
		return "", fmt.Errorf("engine %q: want one of MergeTree, ReplacingMergeTree, AggregatingMergeTree, SummingMergeTree, CollapsingMergeTree", family)
	}
	if !chclient.ValidIdent(table) {
		return "", fmt.Errorf("engine: invalid table name %q", table)
	}
	if d.Cluster == "" {
		return family + "(" + strings.Join(args, ", ") + ")", nil
	}
	zk := []string{"'/clickhouse/tables/{shard}/" + d.DB + "/" + table + "'", "'{replica}'"}
	return "Replicated" + family + "(" + strings.Join(append(zk, args...), ", ") + ")", nil
}

var mergeTreeFamilies = map[string]bool{
	"MergeTree": true, "ReplacingMergeTree": true, "AggregatingMergeTree": true,
	"SummingMergeTree": true, "CollapsingMergeTree": true,
}

// Distributed renders, on a cluster only, the table under the plain name
// that spreads inserts over the shards (with internal_replication each
// shard's Replicated* table copies rows to its other replicas) and reads
// from all of them. rand() spreads rows evenly; with one shard it is moot.
func (d templateData) Distributed(table string) (string, error) {
	if d.Cluster == "" {
		return "", nil
	}
	if !chclient.ValidIdent(table) {
		return "", fmt.Errorf("distributed: invalid table name %q", table)
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[1]s.%[2]s %[3]s AS %[1]s.%[4]s ENGINE = Distributed(%[5]s, %[1]s, %[4]s, rand())",
		d.DB, table, d.OnCluster(), d.Local(table), d.Cluster), nil
}

var addColumnRE = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+([\w.]+)\s+(?:ON\s+CLUSTER\s+\w+\s+)?ADD\s+COLUMN\s+(\w+)\s`)

// Migrate creates the database if needed and applies every migration not yet
// recorded in schema_migrations, one statement per call, in order. It is safe
// to run again and from several processes at once: statements are written to
// be idempotent, and ADD COLUMN is skipped when the column exists (18.16 has
// no ADD COLUMN IF NOT EXISTS).
//
// On a cluster every statement runs ON CLUSTER, so conn may point at any
// member. schema_migrations is then itself replicated, across every shard
// and replica: a migration is a fact about the cluster (its DDL ran on every
// member), not about the node that happened to send it, so any member's
// migrator sees the same history and a rebuilt replica gets it back. A record
// that has not reached this member yet only makes the migrator re-run
// idempotent statements.
func Migrate(ctx context.Context, conn driver.Conn, opts Options) (applied []int, err error) {
	if !chclient.ValidIdent(opts.Database) {
		return nil, fmt.Errorf("migrate: invalid database name %q", opts.Database)
	}
	if opts.Cluster != "" && !chclient.ValidIdent(opts.Cluster) {
		return nil, fmt.Errorf("migrate: invalid cluster name %q", opts.Cluster)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	db := opts.Database
	data := templateData{DB: db, Cluster: opts.Cluster}
	exec := func(q string) error {
		cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
		return conn.Exec(cctx, q)
	}
	if err := exec(joinSQL("CREATE DATABASE IF NOT EXISTS", db, data.OnCluster())); err != nil {
		return nil, fmt.Errorf("migrate: create database %s: %w", db, err)
	}
	if err := exec(schemaMigrationsDDL(data)); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn, db, opts.Timeout)
	if err != nil {
		return nil, err
	}
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		stmts, err := m.render(data)
		if err != nil {
			return applied, err
		}
		for i, stmt := range stmts {
			if skip, err := columnExists(ctx, conn, stmt, db, opts.Timeout); err != nil {
				return applied, fmt.Errorf("migrate %s statement %d: %w", m.Name, i+1, err)
			} else if skip {
				continue
			}
			if err := exec(stmt); err != nil {
				return applied, fmt.Errorf("migrate %s statement %d: %w", m.Name, i+1, err)
			}
		}
		if err := record(ctx, conn, db, m, opts.Timeout); err != nil {
			return applied, err
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// Render returns the statements m runs with opts, in order, without the ones
// that render empty (cluster-only statements on one server). It runs nothing.
func (m Migration) Render(opts Options) ([]string, error) {
	if !chclient.ValidIdent(opts.Database) {
		return nil, fmt.Errorf("render: invalid database name %q", opts.Database)
	}
	if opts.Cluster != "" && !chclient.ValidIdent(opts.Cluster) {
		return nil, fmt.Errorf("render: invalid cluster name %q", opts.Cluster)
	}
	return m.render(templateData{DB: opts.Database, Cluster: opts.Cluster})
}

func (m Migration) render(data templateData) ([]string, error) {
	var out []string
	for i, raw := range m.Statements {
		stmt, err := render(raw, data)
		if err != nil {
			return nil, fmt.Errorf("migrate %s statement %d: %w", m.Name, i+1, err)
		}
		if data.Cluster != "" {
			stmt = stripComments18(stmt)
		}
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out, nil
}

// stripComments18 drops column COMMENT clauses from a statement rendered for
// a cluster: ClickHouse 18.16 refuses the second replica of a Replicated*
// table whose columns carry comments ("Table structure in ZooKeeper is too
// different from local table structure"). The files keep their comments,
// and so does the one-server schema. String literals are skipped whole, so
// a literal that contains the word COMMENT is left alone.
func stripComments18(stmt string) string {
	var b strings.Builder
	for i := 0; i < len(stmt); {
		switch c := stmt[i]; {
		case c == '\'':
			j := skipLiteral(stmt, i)
			b.WriteString(stmt[i:j])
			i = j
		case hasKeywordAt(stmt, i, "COMMENT"):
			j := i + len("COMMENT")
			for j < len(stmt) && (stmt[j] == ' ' || stmt[j] == '\t' || stmt[j] == '\n' || stmt[j] == '\r') {
				j++
			}
			if j < len(stmt) && stmt[j] == '\'' {
				i = skipLiteral(stmt, j)
				continue
			}
			b.WriteString(stmt[i:j])
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// skipLiteral returns the index just past the single-quoted literal at i.
func skipLiteral(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '\'':
			return j + 1
		}
	}
	return len(s)
}

// hasKeywordAt reports whether kw (any case) starts at i as a whole word.
func hasKeywordAt(s string, i int, kw string) bool {
	word := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	if i+len(kw) > len(s) || !strings.EqualFold(s[i:i+len(kw)], kw) {
		return false
	}
	return (i == 0 || !word(s[i-1])) && (i+len(kw) == len(s) || !word(s[i+len(kw)]))
}

// schemaMigrationsDDL is the bookkeeping table. On a cluster its ZooKeeper
// path has no {shard}, so all members share one history (see Migrate), and
// the replica name carries the shard to stay unique across shards.
func schemaMigrationsDDL(d templateData) string {
	engine := "MergeTree()"
	if d.Cluster != "" {
		engine = "ReplicatedMergeTree('/clickhouse/tables/all/" + d.DB + "/schema_migrations', '{shard}-{replica}')"
	}
	return joinSQL("CREATE TABLE IF NOT EXISTS", d.DB+".schema_migrations", d.OnCluster(),
		"(version UInt32, name String, applied_at DateTime('UTC')) ENGINE =", engine, "ORDER BY version")
}

// joinSQL joins the non-empty parts of a statement with single spaces.
func joinSQL(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, " ")
}

func render(stmt string, data templateData) (string, error) {
	t, err := template.New("m").Option("missingkey=error").Parse(stmt)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

func appliedVersions(ctx context.Context, conn driver.Conn, db string, timeout time.Duration) (map[int]bool, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rows, err := conn.Query(cctx, "SELECT DISTINCT version FROM "+db+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	defer rows.Close()
	done := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		done[int(v)] = true
	}
	return done, rows.Err()
}

func columnExists(ctx context.Context, conn driver.Conn, stmt, db string, timeout time.Duration) (bool, error) {
	m := addColumnRE.FindStringSubmatch(stmt)
	if m == nil {
		return false, nil
	}
	table := m[1]
	if i := strings.LastIndex(table, "."); i >= 0 {
		table = table[i+1:]
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var n uint64
	if err := conn.QueryRow(cctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", db, table, m[2]).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

func record(ctx context.Context, conn driver.Conn, db string, m Migration, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	batch, err := conn.PrepareBatch(cctx, "INSERT INTO "+db+".schema_migrations (version, name, applied_at)")
	if err != nil {
		return fmt.Errorf("migrate: record %s: %w", m.Name, err)
	}
	if err := batch.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
		return fmt.Errorf("migrate: record %s: %w", m.Name, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("migrate: record %s: %w", m.Name, err)
	}
	return nil
}
