package chembed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// sessionSettings make results parseable without loss: DateTime as unix
// seconds (no time zone guessing), NaN/Inf as quoted words, 64-bit integers
// as strings so no JSON reader rounds them.
var sessionSettings = []string{
	"SET date_time_output_format = 'unix_timestamp'",
	"SET output_format_json_quote_denormals = 1",
	"SET output_format_json_quote_64bit_integers = 1",
}

// conn implements driver.Conn over one engine.
type conn struct {
	eng     engine
	sem     chan struct{} // one statement at a time; waiting honours ctx
	tz      *time.Location
	version *driver.ServerVersion

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

var _ driver.Conn = (*conn)(nil)

func newConn(ctx context.Context, eng engine) (*conn, error) {
	c := &conn{eng: eng, sem: make(chan struct{}, 1), closed: make(chan struct{})}
	for _, s := range sessionSettings {
		if err := c.exec(ctx, s); err != nil {
			return nil, fmt.Errorf("chembed: session settings: %w", err)
		}
	}
	c.tz = time.UTC
	r, err := c.query(ctx, "SELECT version(), timezone()")
	if err != nil {
		return nil, fmt.Errorf("chembed: server version: %w", err)
	}
	var version, zone string
	if !r.Next() {
		return nil, errors.New("chembed: server version: no row")
	}
	if err := r.Scan(&version, &zone); err != nil {
		return nil, fmt.Errorf("chembed: server version: %w", err)
	}
	if loc, err := time.LoadLocation(zone); err == nil {
		c.tz = loc
	}
	c.version = parseVersion(version, c.tz)
	return c, nil
}

func parseVersion(s string, tz *time.Location) *driver.ServerVersion {
	v := &driver.ServerVersion{Name: "chDB (embedded ClickHouse)", DisplayName: "chdb", Timezone: tz}
	parts := strings.Split(s, ".")
	nums := make([]uint64, 3)
	for i := 0; i < len(parts) && i < 3; i++ {
		nums[i], _ = strconv.ParseUint(parts[i], 10, 64)
	}
	v.Version.Major, v.Version.Minor, v.Version.Patch = nums[0], nums[1], nums[2]
	return v
}

// run executes one statement while holding the session.
func (c *conn) run(ctx context.Context, sql, format string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closed:
		return nil, errClosed
	}
	defer func() { <-c.sem }()
	select {
	case <-c.closed:
		return nil, errClosed
	default:
	}
	// chDB cannot interrupt a running statement: the deadline is checked
	// before it starts, not during.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out, err := c.eng.query(sql, format)
	if err != nil {
		return nil, fmt.Errorf("chembed: %w", err)
	}
	return out, nil
}

var errClosed = errors.New("chembed: store is closed")

func (c *conn) exec(ctx context.Context, sql string) error {
	_, err := c.run(ctx, sql, "TabSeparated")
	return err
}

func (c *conn) query(ctx context.Context, sql string) (*rows, error) {
	out, err := c.run(ctx, sql, resultFormat)
	if err != nil {
		return nil, err
	}
	return parseResult(out, c.tz)
}

// Exec runs a statement, discarding any result.
func (c *conn) Exec(ctx context.Context, query string, args ...any) error {
	q, err := bind(query, args)
	if err != nil {
		return err
	}
	return c.exec(ctx, q)
}

// Query runs a SELECT and returns its rows, all read.
func (c *conn) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	q, err := bind(query, args)
	if err != nil {
		return nil, err
	}
	r, err := c.query(ctx, q)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// QueryRow runs a SELECT; Scan reads its first row or returns sql.ErrNoRows.
func (c *conn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	q, err := bind(query, args)
	if err != nil {
		return &row{err: err}
	}
	r, err := c.query(ctx, q)
	if err != nil {
		return &row{err: err}
	}
	return &row{r: r}
}

// PrepareBatch starts an INSERT that must list its columns.
func (c *conn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("chembed: PrepareBatch options: %w", ErrUnsupported)
	}
	return c.prepareBatch(ctx, query)
}

func (c *conn) Ping(ctx context.Context) error {
	return c.exec(ctx, "SELECT 1")
}

func (c *conn) ServerVersion() (*driver.ServerVersion, error) {
	v := *c.version
	return &v, nil
}

func (c *conn) Contributors() []string { return nil }

func (c *conn) Stats() driver.Stats { return driver.Stats{MaxOpenConns: 1, MaxIdleConns: 1, Open: 1} }

// Close ends the chDB session; a temporary store's directory is removed.
// Statements still waiting for the session fail with a closed error.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.sem <- struct{}{} // wait for the running statement
		c.closeErr = c.eng.close()
		<-c.sem
	})
	return c.closeErr
}

func (c *conn) Select(context.Context, any, string, ...any) error {
	return fmt.Errorf("chembed: Select: %w", ErrUnsupported)
}

func (c *conn) QueryFormat(context.Context, string, string, ...any) (io.ReadCloser, error) {
	return nil, fmt.Errorf("chembed: QueryFormat: %w", ErrUnsupported)
}

func (c *conn) InsertFormat(context.Context, string, string, io.Reader) error {
	return fmt.Errorf("chembed: InsertFormat: %w", ErrUnsupported)
}

func (c *conn) AsyncInsert(context.Context, string, bool, ...any) error {
	return fmt.Errorf("chembed: AsyncInsert: %w", ErrUnsupported)
}
