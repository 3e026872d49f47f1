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
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

// faults switches safeguards off. Only builds with -tags faultinject set it
// (faultinject.go, from the environment), so the fault suite can show that
// its checks catch a lost result; shipped binaries cannot.
var faults struct {
	noSpool bool // NewSpooled keeps results in memory only
}

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
	// Stored returns which of the rows' probe ids are already stored.
	Stored(ctx context.Context, rows []results.Result) (map[string]bool, error)
}

// Table is the probe_results table of one ClickHouse database.
type Table struct {
	Conn driver.Conn
	DB   string
}

// Insert implements Store through resultsdb.Insert.
func (t Table) Insert(ctx context.Context, rows []results.Result) error {
	return resultsdb.Insert(ctx, t.Conn, t.DB, rows)
}

// Stored implements Store. It asks by probe id rather than batch id so the
// answer holds even when a batch was split across partitions (a part per day)
// and only some of it landed, or when rows were re-batched after a restart.
// The started_at range lets ClickHouse skip every other day's partition.
func (t Table) Stored(ctx context.Context, rows []results.Result) (map[string]bool, error) {
	if !chclient.ValidIdent(t.DB) {
		return nil, fmt.Errorf("stored probe ids: invalid database %q", t.DB)
	}
	out := map[string]bool{}
	if len(rows) == 0 {
		return out, nil
	}
	// 18.16 cannot bind an array to IN, so the ids are quoted literals.
	ids := make([]string, len(rows))
	lo, hi := rows[0].StartedAt, rows[0].StartedAt
	for i, r := range rows {
		ids[i] = chclient.Quote(r.ProbeID)
		if r.StartedAt.Before(lo) {
			lo = r.StartedAt
		}
		if r.StartedAt.After(hi) {
			hi = r.StartedAt
		}
	}
	q, err := t.Conn.Query(ctx, "SELECT DISTINCT probe_id FROM "+t.DB+".probe_results WHERE started_at >= ? AND started_at <= ? AND probe_id IN ("+strings.Join(ids, ",")+")",
		lo.UTC().Add(-time.Second), hi.UTC().Add(time.Second))
	if err != nil {
		return nil, fmt.Errorf("stored probe ids: %w", err)
	}
	defer q.Close()
	for q.Next() {
		var id string
		if err := q.Scan(&id); err != nil {
			return nil, fmt.Errorf("stored probe ids: %w", err)
		}
		out[id] = true
	}
	return out, q.Err()
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
	spool    *Spool
	notify   chan struct{}
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

// NewSpooled starts a writer whose queue is a spool on disk: Write returns
// once the result is fsync'd there, whatever the store's state, and the
// batching goroutine tails the spool into the store, acknowledging what
// landed. Rows the spool held from an earlier run (a crash, or the store down
// at shutdown) are replayed first, each checked against the store by probe
// id so none is stored twice. Close closes the spool.
func NewSpooled(store Store, sp *Spool, cfg Config, log *slog.Logger, hooks Hooks) *Writer {
	if faults.noSpool {
		_ = sp.Close()
		return New(store, cfg, log, hooks)
	}
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	w := &Writer{cfg: cfg, store: store, log: log, hooks: hooks, spool: sp,
		notify: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if n := sp.Pending(); n > 0 {
		log.Info("replaying spooled results", "rows", n)
	}
	go w.spoolLoop()
	return w
}

// Write queues one result. With a spool it returns once the result is on
// disk (ErrSpoolFull when the spool is at its limit); without, it blocks
// while the queue is full (a result is never dropped) until ctx ends.
func (w *Writer) Write(ctx context.Context, r results.Result) error {
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	if w.spool != nil {
		if err := w.spool.Append(r); err != nil {
			return fmt.Errorf("spool result %s: %w", r.ProbeID, err)
		}
		select {
		case w.notify <- struct{}{}:
		default:
		}
		if w.hooks.Queued != nil {
			w.hooks.Queued(w.spool.Pending())
		}
		return nil
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
	if w.spool != nil {
		if w.leftover > 0 {
			w.log.Warn("store unreachable at shutdown; results stay in the spool for the next start", "rows", w.leftover, "err", w.lastErr)
		}
		return w.spool.Close()
	}
	if w.leftover > 0 {
		return fmt.Errorf("writer closed with %d rows not stored: %w", w.leftover, w.lastErr)
	}
	return nil
}

// runContext ends when Close's deadline passes (or the loop ends): only then
// does a flush stop retrying.
func (w *Writer) runContext() (context.Context, context.CancelFunc) {
	runCtx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-w.stop:
			select {
			case <-w.stopCtx.Done():
			case <-runCtx.Done():
			}
			cancel()
		case <-runCtx.Done():
		}
	}()
	return runCtx, cancel
}

func (w *Writer) spoolLoop() {
	defer close(w.done)
	runCtx, cancel := w.runContext()
	defer cancel()
	cursor := w.spool.Acked()
	replayEnd := w.spool.End()
	flushAll := func(force bool) bool {
		for force || w.spool.Pending() >= w.cfg.BatchSize {
			rows, next, err := w.spool.Read(cursor, w.cfg.BatchSize)
			if err != nil {
				w.lastErr = err
				w.log.Error("spool unreadable; results after this point wait for an operator", "err", err)
				return false
			}
			if len(rows) == 0 {
				return true
			}
			// Rows spooled by an earlier run may have landed before it died.
			if err := w.flush(runCtx, rows, cursor.less(replayEnd)); err != nil {
				w.lastErr = err
				return false
			}
			if err := w.spool.Ack(next, len(rows)); err != nil {
				w.lastErr = err
				w.log.Error("spool checkpoint failed", "err", err)
				return false
			}
			cursor = next
			if w.hooks.Queued != nil {
				w.hooks.Queued(w.spool.Pending())
			}
		}
		return true
	}
	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	flushAll(true)
	for {
		select {
		case <-w.notify:
			flushAll(false)
		case <-tick.C:
			flushAll(true)
		case <-w.stop:
			flushAll(true)
			w.leftover = w.spool.Pending()
			return
		}
		if runCtx.Err() != nil {
			w.leftover = w.spool.Pending()
			return
		}
	}
}

func (w *Writer) loop() {
	defer close(w.done)
	// Rows are retried until stored; runCtx only ends at Close's deadline.
	runCtx, cancel := w.runContext()
	defer cancel()

	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	var pending []results.Result
	flush := func() {
		for len(pending) > 0 {
			n := min(len(pending), w.cfg.BatchSize)
			if err := w.flush(runCtx, pending[:n], false); err != nil {
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
func (w *Writer) flush(ctx context.Context, rows []results.Result, check bool) error {
	rows = append([]results.Result(nil), rows...)
	start := time.Now()
	backoff := w.cfg.MinBackoff
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
		cctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
		stored, err := w.store.Stored(cctx, *rows)
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
