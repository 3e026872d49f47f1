// Package chclient opens ClickHouse connections the way this project needs
// them on every server version it supports (18.16 and current releases):
// native protocol only, dial and read timeouts always set, and a ping before
// the connection is handed out.
//
// Config also carries the -store flag of the leaderboard, explorer-api and
// tester binaries, which selects either a ClickHouse server
// (clickhouse://host:port, or -clickhouse.addr) or an embedded chDB data
// directory (embedded:DIR); internal/chstore opens either.
package chclient

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config says where the store is.
type Config struct {
	// Store selects the store: "" or "clickhouse://host:port" for a server
	// (the former at Addr), "embedded:DIR" for embedded ClickHouse (chDB) with
	// its data in DIR. Set by the -store flag (RegisterStoreFlag).
	Store        string
	Addr         string        // host:port of the native protocol
	Database     string        // database holding the project's tables
	User         string        // default "default"
	Password     string        // from the environment, never a flag default
	DialTimeout  time.Duration // default 5 s
	ReadTimeout  time.Duration // default 30 s
	MaxOpenConns int           // default 10
}

// RegisterFlags adds the store flags with their defaults under prefix (e.g. "clickhouse.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&c.Addr, prefix+"addr", "127.0.0.1:9000", "ClickHouse native protocol address (host:port)")
	fs.StringVar(&c.Database, prefix+"database", "lpgauge", "ClickHouse database")
	fs.StringVar(&c.User, prefix+"user", "default", "ClickHouse user (password from $CLICKHOUSE_PASSWORD)")
	fs.DurationVar(&c.DialTimeout, prefix+"dial-timeout", 5*time.Second, "ClickHouse dial timeout")
	fs.DurationVar(&c.ReadTimeout, prefix+"read-timeout", 30*time.Second, "ClickHouse read timeout per query")
	fs.IntVar(&c.MaxOpenConns, prefix+"max-open-conns", 10, "ClickHouse connection pool size")
}

// StoreFlagUsage is the -store flag's help, the same in every binary.
const StoreFlagUsage = "where results live: clickhouse://host:port (a ClickHouse server; default: the one at -clickhouse.addr) " +
	"or embedded:DIR (embedded ClickHouse, chDB, with its data in DIR: no server; needs a chdb build and libchdb from `make deps`)"

// RegisterStoreFlag adds -store, which selects a server or the embedded store.
func (c *Config) RegisterStoreFlag(fs *flag.FlagSet) {
	fs.StringVar(&c.Store, "store", "", StoreFlagUsage)
}

// Embedded reports whether the config selects the embedded store, and its
// data directory.
func (c *Config) Embedded() (dir string, ok bool) {
	return strings.CutPrefix(c.Store, embeddedScheme)
}

const (
	embeddedScheme = "embedded:"
	serverScheme   = "clickhouse://"
)

// resolve applies -store to Addr: clickhouse://host:port overrides it.
func (c *Config) resolve() error {
	switch {
	case c.Store == "":
		return nil
	case strings.HasPrefix(c.Store, embeddedScheme):
		if dir, _ := c.Embedded(); strings.TrimSpace(dir) == "" {
			return fmt.Errorf("-store %q: want embedded:DIR, the directory holding the embedded store's data (created if missing)", c.Store)
		}
		return nil
	case strings.HasPrefix(c.Store, serverScheme):
		addr := strings.TrimSuffix(strings.TrimPrefix(c.Store, serverScheme), "/")
		if addr == "" || !strings.Contains(addr, ":") || strings.ContainsAny(addr, "/?@") {
			return fmt.Errorf("-store %q: want clickhouse://host:port (the native protocol port, usually 9000)", c.Store)
		}
		c.Addr = addr
		return nil
	}
	return fmt.Errorf("-store %q: want clickhouse://host:port (a ClickHouse server) or embedded:DIR (embedded ClickHouse with its data in DIR)", c.Store)
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if err := c.resolve(); err != nil {
		return err
	}
	if _, ok := c.Embedded(); ok {
		if !ValidIdent(c.Database) {
			return fmt.Errorf("database %q: use letters, digits and underscores", c.Database)
		}
		return nil
	}
	if c.Addr == "" || !strings.Contains(c.Addr, ":") {
		errs = append(errs, fmt.Errorf("addr %q: want host:port of the native protocol", c.Addr))
	}
	if !ValidIdent(c.Database) {
		errs = append(errs, fmt.Errorf("database %q: use letters, digits and underscores", c.Database))
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// ValidIdent reports whether s is safe to splice into SQL as an identifier.
func ValidIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Open connects to the server without selecting a database (so callers can
// create it) and pings it. It opens servers only: internal/chstore.Open also
// opens the embedded store.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	if err := c.resolve(); err != nil {
		return nil, err
	}
	if _, ok := c.Embedded(); ok {
		return nil, fmt.Errorf("-store %s is the embedded store: open it with internal/chstore", c.Store)
	}
	if c.User == "" {
		c.User = "default"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = 10
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:            []string{c.Addr},
		Protocol:        clickhouse.Native,
		Auth:            clickhouse.Auth{Database: "default", Username: c.User, Password: c.Password},
		DialTimeout:     c.DialTimeout,
		ReadTimeout:     c.ReadTimeout,
		MaxOpenConns:    c.MaxOpenConns,
		MaxIdleConns:    c.MaxOpenConns,
		ConnMaxLifetime: 10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", c.Addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.DialTimeout+time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
}

// Quote returns s as a ClickHouse string literal. Values reach SQL text only
// through this or through bound parameters.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
