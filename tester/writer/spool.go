package writer

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/lpgauge/lpgauge/internal/results"
)

// ErrSpoolFull is returned by Append when the spool holds its maximum: the
// store has been down so long that keeping more would fill the disk.
var ErrSpoolFull = errors.New("spool full")

// Pos is a place in the spool: a segment number and a byte offset in it.
type Pos struct {
	Seg uint64
	Off int64
}

func (p Pos) less(q Pos) bool { return p.Seg < q.Seg || (p.Seg == q.Seg && p.Off < q.Off) }

// Spool is an append-only, fsync'd log of results on disk: every result is
// written here before anything else happens to it, and stays until the store
// has it. It survives the store being down and the tester being killed (-9):
// on open, a torn last record is cut off and everything after the
// acknowledged position is replayed, in order.
//
// Layout: numbered segment files (NNNNNNNNNNNN.seg) of records
// [len uint32][crc32 uint32][JSON], and a checkpoint file "acked" holding the
// position up to which the store has every record.
type Spool struct {
	dir      string
	maxBytes int64
	segBytes int64

	lock    *os.File // flock held while open
	mu      sync.Mutex
	cur     *os.File
	end     Pos
	acked   Pos
	size    int64 // bytes in segments not yet deleted
	pending int   // records after acked
}

const recordHeader = 8

// OpenSpool opens (or creates) the spool in dir, holding at most maxBytes.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes <= 0 {
		maxBytes = 1 << 30
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, segBytes: min(maxBytes/8+1, 16<<20)}
	// Two writers on one spool would interleave records and checkpoints.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another tester process: give each its own -spool-dir", dir)
	}
	s.lock = lock
	if err := s.readAcked(); err != nil {
		lock.Close()
		return nil, err
	}
	segs, err := s.segments()
	if err != nil {
		return nil, err
	}
	for _, seg := range segs {
		if seg < s.acked.Seg {
			_ = os.Remove(s.segPath(seg)) // left over from a crash during Ack
			continue
		}
		st, err := os.Stat(s.segPath(seg))
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		s.size += st.Size()
	}
	last := s.acked.Seg
	if len(segs) > 0 && segs[len(segs)-1] > last {
		last = segs[len(segs)-1]
	}
	if last == 0 {
		last = 1
	}
	// Recover the tail: count records after acked, cut a torn last record.
	for seg := max(s.acked.Seg, 1); seg <= last; seg++ {
		from := int64(0)
		if seg == s.acked.Seg {
			from = s.acked.Off
		}
		n, good, err := scanSegment(s.segPath(seg), from)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		s.pending += n
		if seg == last {
			if st, err := os.Stat(s.segPath(seg)); err == nil && st.Size() > good {
				if err := os.Truncate(s.segPath(seg), good); err != nil {
					return nil, fmt.Errorf("spool: cut torn record: %w", err)
				}
				s.size -= st.Size() - good
			}
			s.end = Pos{Seg: seg, Off: good}
		}
	}
	f, err := os.OpenFile(s.segPath(s.end.Seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open segment: %w", err)
	}
	s.cur = f
	return s, nil
}

func (s *Spool) segPath(seg uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%012d.seg", seg))
}

func (s *Spool) segments() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".seg"); ok {
			if v, err := strconv.ParseUint(n, 10, 64); err == nil {
				out = append(out, v)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (s *Spool) readAcked() error {
	b, err := os.ReadFile(filepath.Join(s.dir, "acked"))
	if errors.Is(err, os.ErrNotExist) {
		s.acked = Pos{Seg: 1}
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: read checkpoint: %w", err)
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &s.acked.Seg, &s.acked.Off); err != nil || s.acked.Seg == 0 {
		return fmt.Errorf("spool: checkpoint %s/acked is corrupt (%q): move the spool aside to start afresh", s.dir, b)
	}
	return nil
}

// scanSegment counts whole, valid records from offset from, and returns
// the offset just after the last one.
func scanSegment(path string, from int64) (n int, good int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, from, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, from, err
	}
	r := bufio.NewReader(f)
	good = from
	for {
		_, size, err := readRecord(r)
		if err != nil {
			return n, good, nil // EOF or a torn/corrupt tail: stop here
		}
		n++
		good += size
	}
}

func readRecord(r io.Reader) ([]byte, int64, error) {
	var h [recordHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, 0, err
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	if n > 16<<20 {
		return nil, 0, fmt.Errorf("spool: record of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, 0, err
	}
	if crc32.ChecksumIEEE(b) != binary.LittleEndian.Uint32(h[4:8]) {
		return nil, 0, errors.New("spool: record checksum mismatch")
	}
	return b, int64(recordHeader) + int64(n), nil
}

// Append writes r and fsyncs before returning: once Append returns nil, the
// result survives a crash.
func (s *Spool) Append(r results.Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("spool: encode: %w", err)
	}
	rec := make([]byte, recordHeader+len(b))
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(b)))
	binary.LittleEndian.PutUint32(rec[4:8], crc32.ChecksumIEEE(b))
	copy(rec[recordHeader:], b)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+int64(len(rec)) > s.maxBytes {
		return fmt.Errorf("%w: %d bytes held, limit %d", ErrSpoolFull, s.size, s.maxBytes)
	}
	if s.end.Off > 0 && s.end.Off+int64(len(rec)) > s.segBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if _, err := s.cur.Write(rec); err != nil {
		// A partial write is cut off on the next open; drop it now as well.
		_ = s.cur.Truncate(s.end.Off)
		return fmt.Errorf("spool: write: %w", err)
	}
	if err := s.cur.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.end.Off += int64(len(rec))
	s.size += int64(len(rec))
	s.pending++
	return nil
}

func (s *Spool) rotate() error {
	if err := s.cur.Close(); err != nil {
		return fmt.Errorf("spool: close segment: %w", err)
	}
	next := Pos{Seg: s.end.Seg + 1}
	f, err := os.OpenFile(s.segPath(next.Seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: new segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.cur, s.end = f, next
	return nil
}

// Read returns up to max records from pos (not beyond the last complete
// append) and the position after them.
func (s *Spool) Read(pos Pos, max int) ([]results.Result, Pos, error) {
	s.mu.Lock()
	end := s.end
	s.mu.Unlock()
	var out []results.Result
	for len(out) < max && pos.less(end) {
		before := pos
		f, err := os.Open(s.segPath(pos.Seg))
		if err != nil {
			return out, pos, fmt.Errorf("spool: read: %w", err)
		}
		if _, err := f.Seek(pos.Off, io.SeekStart); err != nil {
			f.Close()
			return out, pos, fmt.Errorf("spool: read: %w", err)
		}
		r := bufio.NewReader(f)
		limit := int64(-1)
		if pos.Seg == end.Seg {
			limit = end.Off
		}
		for len(out) < max && (limit < 0 || pos.Off < limit) {
			b, n, err := readRecord(r)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return out, pos, fmt.Errorf("spool: segment %d at %d: %w", pos.Seg, pos.Off, err)
			}
			var row results.Result
			if err := json.Unmarshal(b, &row); err != nil {
				f.Close()
				return out, pos, fmt.Errorf("spool: decode record: %w", err)
			}
			out = append(out, row)
			pos.Off += n
		}
		f.Close()
		if len(out) < max && pos.Seg < end.Seg {
			pos = Pos{Seg: pos.Seg + 1}
		}
		if pos == before {
			return out, pos, fmt.Errorf("spool: segment %d ends before %d", pos.Seg, end.Off)
		}
	}
	return out, pos, nil
}

// Ack records that every record before pos is stored, and deletes segments
// wholly before it. n is how many records that acknowledges.
func (s *Spool) Ack(pos Pos, n int) error {
	tmp := filepath.Join(s.dir, "acked.tmp")
	if err := writeSync(tmp, fmt.Sprintf("%d %d\n", pos.Seg, pos.Off)); err != nil {
		return fmt.Errorf("spool: checkpoint: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "acked")); err != nil {
		return fmt.Errorf("spool: checkpoint: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for seg := s.acked.Seg; seg < pos.Seg; seg++ {
		if st, err := os.Stat(s.segPath(seg)); err == nil {
			s.size -= st.Size()
		}
		_ = os.Remove(s.segPath(seg))
	}
	s.acked = pos
	s.pending -= n
	return nil
}

// Acked is the position up to which the store has everything.
func (s *Spool) Acked() Pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// End is the position after the last record.
func (s *Spool) End() Pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// Pending is how many records wait for the store.
func (s *Spool) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// Close closes the open segment.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.cur.Close()
	_ = s.lock.Close() // releases the flock
	return err
}

func writeSync(path, content string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync dir: %w", err)
	}
	return nil
}
