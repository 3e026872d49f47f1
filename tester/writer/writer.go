// Package writer moves probe results into ClickHouse: probes hand rows to a
// buffered channel, one batching goroutine flushes them on size or timer and
// once more on stop, and a failed insert is retried only for the rows that
// did not land, so no result is stored twice.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/results"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("writer closed")

// Config tunes batching and retries.
type Config struct {
	BatchSize     int           // flush when this many rows wait (default 500)
	FlushInterval time.Duration // flush at least this often (default 2 s)
	QueueSize     int           // channel buffer (default 4096)
	InsertTimeout time.Duration // deadline of one INSERT or check (default 30 s)
	MinBackoff    time.Duration // first retry wait (default 200 ms)
	MaxBackoff    time.Duration // retry wait cap (default 30 s)
}

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 2 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.InsertTimeout <= 0 {
		c.InsertTimeout = 30 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
}

// Store is where batches go: ClickHouse in production (Table), anything in
// between (the spool wraps it).
type Store interface {
	// Insert writes rows (their BatchID set) in one batch.
	Insert(ctx context.Context, rows []results.Result) error
	// Stored returns which of the given probe ids are already stored.
	Stored(ctx context.Context, probeIDs []string) (map[string]bool, error)
}

// Table is the probe_results table of one ClickHouse database.
type Table struct {
	Conn driver.Conn
	DB   string
}

// Insert implements Store through results.Insert.
func (t Table) Insert(ctx context.Context, rows []results.Result) error {
	return results.Insert(ctx, t.Conn, t.DB, rows)
}

// Stored implements Store. It asks by probe id rather than batch id so the
// answer holds even when a batch was split across partitions (a part per day)
// and only some of it landed, or when rows were re-batched after a restart.
func (t Table) Stored(ctx context.Context, ids []string) (map[string]bool, error) {
	if !chclient.ValidIdent(t.DB) {
		return nil, fmt.Errorf("stored probe ids: invalid database %q", t.DB)
	}
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := t.Conn.Query(ctx, "SELECT DISTINCT probe_id FROM "+t.DB+".probe_results WHERE probe_id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("stored probe ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("stored probe ids: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

// Hooks observe the writer (metrics); any may be nil.
type Hooks struct {
	Flushed func(rows int, took time.Duration) // a batch landed
	Failed  func(err error)                    // an attempt failed (it will be retried)
	Queued  func(depth int)                    // queue depth after a change
}

// Writer batches results into a Store. Create with New, stop with Close.
type Writer struct {
	cfg   Config
	store Store
	log   *slog.Logger
	hooks Hooks

	in       chan results.Result
	stop     chan struct{}
	stopCtx  context.Context // deadline for the final flush, set by Close
	done     chan struct{}
	closeMu  sync.RWMutex
	closed   bool
	leftover int // rows not stored when the goroutine ended
	lastErr  error
}

// New starts the batching goroutine.
func New(store Store, cfg Config, log *slog.Logger, hooks Hooks) *Writer {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	w := &Writer{cfg: cfg, store: store, log: log, hooks: hooks,
		in: make(chan results.Result, cfg.QueueSize), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// Write queues one result. It blocks while the queue is full (a result is
// never dropped) until ctx ends.
func (w *Writer) Write(ctx context.Context, r results.Result) error {
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.in <- r:
		if w.hooks.Queued != nil {
			w.hooks.Queued(len(w.in))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue result %s: %w", r.ProbeID, ctx.Err())
	}
}

// Close stops accepting rows, flushes what is queued, and waits until it is
// stored or ctx ends. It reports how many rows could not be stored.
func (w *Writer) Close(ctx context.Context) error {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	w.stopCtx = ctx
	close(w.stop)
	w.closeMu.Unlock()
	<-w.done
	if w.leftover > 0 {
		return fmt.Errorf("writer closed with %d rows not stored: %w", w.leftover, w.lastErr)
	}
	return nil
}

func (w *Writer) loop() {
	defer close(w.done)
	// Rows are retried until stored; runCtx only ends at Close's deadline.
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.stop:
			select {
			case <-w.stopCtx.Done():
			case <-w.done:
			}
			cancel()
		case <-w.done:
		}
	}()

	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	var pending []results.Result
	flush := func() {
		for len(pending) > 0 {
			n := min(len(pending), w.cfg.BatchSize)
			if err := w.flush(runCtx, pending[:n]); err != nil {
				w.lastErr = err
				return
			}
			pending = pending[n:]
		}
	}
	for {
		select {
		case r := <-w.in:
			pending = append(pending, r)
			if len(pending) >= w.cfg.BatchSize {
				flush()
			}
		case <-tick.C:
			flush()
		case <-w.stop:
			// Closed under closeMu: no Write can be in flight, so draining
			// the channel empties it for good.
		drain:
			for {
				select {
				case r := <-w.in:
					pending = append(pending, r)
				default:
					break drain
				}
			}
			flush()
			w.leftover = len(pending)
			return
		}
		if runCtx.Err() != nil {
			w.leftover = len(pending) + len(w.in)
			return
		}
	}
}

// flush stores rows exactly once: after any failed attempt it asks the store
// which probe ids landed (an INSERT that timed out may still have been
// stored) and retries only the rest, under the batch id of the rest, with
// exponential backoff. It returns only when all are stored or ctx ends.
func (w *Writer) flush(ctx context.Context, rows []results.Result) error {
	rows = append([]results.Result(nil), rows...)
	start := time.Now()
	backoff := w.cfg.MinBackoff
	check := false
	for {
		err := w.attempt(ctx, &rows, check)
		if err == nil {
			if w.hooks.Flushed != nil {
				w.hooks.Flushed(len(rows), time.Since(start))
			}
			return nil
		}
		check = true
		if w.hooks.Failed != nil {
			w.hooks.Failed(err)
		}
		w.log.Warn("store write failed, will retry", "rows", len(rows), "backoff", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("flush %d rows: %w (last error: %w)", len(rows), ctx.Err(), err)
		}
		backoff = min(backoff*2, w.cfg.MaxBackoff)
	}
}

func (w *Writer) attempt(ctx context.Context, rows *[]results.Result, check bool) error {
	if check {
		ids := make([]string, len(*rows))
		for i, r := range *rows {
			ids[i] = r.ProbeID
		}
		cctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
		stored, err := w.store.Stored(cctx, ids)
		cancel()
		if err != nil {
			return fmt.Errorf("check landed rows: %w", err)
		}
		rest := (*rows)[:0]
		for _, r := range *rows {
			if !stored[r.ProbeID] {
				rest = append(rest, r)
			}
		}
		*rows = rest
		if len(rest) == 0 {
			return nil
		}
	}
	id := results.BatchID(*rows)
	for i := range *rows {
		(*rows)[i].BatchID = id
	}
	cctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	return w.store.Insert(cctx, *rows)
}
