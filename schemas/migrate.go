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
	// Timeout bounds each statement (default 60 s).
	Timeout time.Duration
}

// templateData is what migration files may reference.
type templateData struct {
	DB string
}

var addColumnRE = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+([\w.]+)\s+ADD\s+COLUMN\s+(\w+)\s`)

// Migrate creates the database if needed and applies every migration not yet
// recorded in schema_migrations, one statement per call, in order. It is safe
// to run again and from several processes at once: statements are written to
// be idempotent, and ADD COLUMN is skipped when the column exists (18.16 has
// no ADD COLUMN IF NOT EXISTS).
func Migrate(ctx context.Context, conn driver.Conn, opts Options) (applied []int, err error) {
	if !chclient.ValidIdent(opts.Database) {
		return nil, fmt.Errorf("migrate: invalid database name %q", opts.Database)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	db := opts.Database
	exec := func(q string) error {
		cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
		return conn.Exec(cctx, q)
	}
	if err := exec("CREATE DATABASE IF NOT EXISTS " + db); err != nil {
		return nil, fmt.Errorf("migrate: create database %s: %w", db, err)
	}
	if err := exec("CREATE TABLE IF NOT EXISTS " + db + ".schema_migrations (version UInt32, name String, applied_at DateTime('UTC')) ENGINE = MergeTree() ORDER BY version"); err != nil {
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
	data := templateData{DB: db}
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		for i, raw := range m.Statements {
			stmt, err := render(raw, data)
			if err != nil {
				return applied, fmt.Errorf("migrate %s statement %d: %w", m.Name, i+1, err)
			}
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
