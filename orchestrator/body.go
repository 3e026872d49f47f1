package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/capability"
)

// spoolMemBytes is the largest body kept in memory; larger ones go to an
// unlinked temporary file, so memory does not grow with upload sizes.
const spoolMemBytes = 256 << 10

// body is a request body held for the life of its job: the decoder reads it
// once and the runner call reads it again.
type body struct {
	mem  []byte
	f    *os.File
	size int64
}

// reader reads the body from its start; each call is independent.
func (b *body) reader() *io.SectionReader {
	if b.f != nil {
		return io.NewSectionReader(b.f, 0, b.size)
	}
	return io.NewSectionReader(bytes.NewReader(b.mem), 0, b.size)
}

// send is the body for the runner call. One in memory goes as a
// bytes.Reader, which net/http writes with its headers in one write; any
// other reader gets its headers flushed first, a second syscall per job.
func (b *body) send() io.Reader {
	if b.f == nil {
		return bytes.NewReader(b.mem)
	}
	return b.reader()
}

// decode decodes the job from the body: one held in memory is decoded in
// place, without a copy.
func (b *body) decode(p capability.Pipeline, contentType string) (aiRequest, error) {
	if b.f == nil {
		return decodeRequest(p, contentType, b.mem)
	}
	return decodeStream(p, contentType, b.reader())
}

// close frees the body (the file was unlinked at creation, so closing it is
// enough: a crash leaves nothing behind either).
func (b *body) close() {
	if b.f != nil {
		_ = b.f.Close()
	}
}

// readBody spools r: in memory up to spoolMemBytes, past that into an
// unlinked file under dir.
func readBody(r io.Reader, dir string) (*body, error) {
	buf, err := io.ReadAll(io.LimitReader(r, spoolMemBytes+1))
	if err != nil {
		return nil, err
	}
	if len(buf) <= spoolMemBytes {
		return &body{mem: buf, size: int64(len(buf))}, nil
	}
	f, err := os.CreateTemp(dir, "orchestrator-body-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpool, err)
	}
	_ = os.Remove(f.Name())
	b := &body{f: f}
	n, err := f.Write(buf)
	b.size = int64(n)
	if err == nil {
		var m int64
		m, err = io.Copy(f, r)
		b.size += m
	}
	if err != nil {
		b.close()
		var pe *os.PathError
		if errors.As(err, &pe) { // the file's write failed (disk full), not the client's read
			return nil, fmt.Errorf("%w: %w", errSpool, err)
		}
		return nil, err
	}
	return b, nil
}

// byteBudget bounds the request-body bytes held at once across all
// requests: a body's bytes are reserved before it is read and released when
// its job ends.
type byteBudget struct {
	mu    sync.Mutex
	limit int64
	used  int64
	// freed is closed and replaced by the first release after someone
	// started waiting on it; while nobody waits a release touches neither
	// (no channel made and closed per job).
	freed   chan struct{}
	waiting bool
}

func newByteBudget(limit int64) *byteBudget {
	return &byteBudget{limit: limit, freed: make(chan struct{})}
}

// acquire reserves n bytes, waiting up to wait for others to release. The
// deadline's timer is made only when the bytes are not free at once.
func (b *byteBudget) acquire(ctx context.Context, n int64, wait time.Duration) bool {
	var timeout <-chan time.Time
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return true
		}
		b.waiting = true
		freed := b.freed
		b.mu.Unlock()
		if timeout == nil {
			timer := time.NewTimer(wait)
			defer timer.Stop()
			timeout = timer.C
		}
		select {
		case <-freed:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.waiting {
		close(b.freed)
		b.freed = make(chan struct{})
		b.waiting = false
	}
	b.mu.Unlock()
}

func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
