package writer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func rows(n int, prefix string) []results.Result {
	out := make([]results.Result, n)
	for i := range out {
		out[i] = results.Result{
			ProbeID: results.ProbeID(prefix, fmt.Sprint(i)), RoundID: "FRA/x", Region: "FRA",
			TesterID: "0x00000000000000000000000000000000000000aa", Orchestrator: "0x00000000000000000000000000000000000000bb",
			Pipeline: "Text to image", Model: "m", StartedAt: time.Now(), Outcome: results.Success, Total: time.Duration(i) * time.Millisecond,
		}
	}
	return out
}

func perProbe(t *testing.T, db *chtest.DB) (ids, total uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.Conn.QueryRow(ctx, "SELECT uniqExact(probe_id), count() FROM "+db.Name+".probe_results").Scan(&ids, &total); err != nil {
		t.Fatal(err)
	}
	return ids, total
}

// lostAck stores the batch and then reports failure, as when the connection
// drops after ClickHouse committed the insert: the retry must not store the
// rows again.
type lostAck struct {
	Table
	fails atomic.Int32
}

func (l *lostAck) Insert(ctx context.Context, rows []results.Result) error {
	if err := l.Table.Insert(ctx, rows); err != nil {
		return err
	}
	if l.fails.Add(-1) >= 0 {
		return errors.New("read: connection reset by peer")
	}
	return nil
}

func TestAmbiguousInsertIsNotStoredTwice(t *testing.T) {
	db := chtest.NewDB(t)
	store := &lostAck{Table: Table{Conn: db.Conn, DB: db.Name}}
	store.fails.Store(2)
	w := New(store, Config{BatchSize: 10, FlushInterval: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond}, nil, Hooks{})
	for _, r := range rows(25, t.Name()) {
		if err := w.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, total := perProbe(t, db); ids != 25 || total != 25 {
		t.Errorf("stored %d rows for %d probe ids, want 25 and 25", total, ids)
	}
}

// A spool torn by kill -9 mid-append loses only the torn record; every
// complete one is replayed in order, and a spooled writer stores each once
// even when the previous run stored some of them but died before its
// checkpoint.
func TestSpoolReplaysAfterCrash(t *testing.T) {
	db := chtest.NewDB(t)
	dir := t.TempDir()
	sp, err := OpenSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	all := rows(30, t.Name())
	for _, r := range all {
		if err := sp.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	_ = sp.Close()
	// The previous run stored the first 10 but never wrote its checkpoint.
	if err := (Table{Conn: db.Conn, DB: db.Name}).Insert(context.Background(), all[:10]); err != nil {
		t.Fatal(err)
	}
	// And it died in the middle of appending one more record.
	seg := filepath.Join(dir, "000000000001.seg")
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, '{', '"'})
	f.Close()

	sp, err = OpenSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Pending() != 30 {
		t.Fatalf("reopened spool holds %d records, want 30", sp.Pending())
	}
	got, _, err := sp.Read(sp.Acked(), 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].ProbeID != all[i].ProbeID {
			t.Fatalf("record %d is %s, want %s: replay out of order", i, got[i].ProbeID, all[i].ProbeID)
		}
	}
	w := NewSpooled(Table{Conn: db.Conn, DB: db.Name}, sp, Config{BatchSize: 7, FlushInterval: 20 * time.Millisecond}, nil, Hooks{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, total := perProbe(t, db); ids != 30 || total != 30 {
		t.Errorf("stored %d rows for %d probe ids, want 30 and 30", total, ids)
	}
	sp, err = OpenSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if sp.Pending() != 0 {
		t.Errorf("%d records still pending after a clean close", sp.Pending())
	}
}

// The spool refuses rows past its size limit instead of filling the disk.
func TestSpoolBounded(t *testing.T) {
	sp, err := OpenSpool(t.TempDir(), 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var full error
	for _, r := range rows(100, "x") {
		if err := sp.Append(r); err != nil {
			full = err
			break
		}
	}
	if !errors.Is(full, ErrSpoolFull) {
		t.Errorf("100 rows into a 4 KiB spool: got %v, want ErrSpoolFull", full)
	}
}
