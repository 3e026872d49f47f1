package orchestrator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/capability"
)

// fifo keeps the requests waiting for a runner slot in arrival order, one
// line per (pipeline, model): a request's queue position is the number of
// requests ahead of it in its line, and only the head of a line takes a
// slot that frees, so the positions a progress stream reports (2, 1, then
// running) are the order in which jobs really start. Before lines existed
// every waiter polled and whichever woke first took the slot.
type fifo struct {
	mu    sync.Mutex
	lines map[ModelKey][]*waiter
	// mean is the moving average of inference time per (pipeline, model),
	// for the estimated wait.
	mean map[ModelKey]time.Duration
}

type waiter struct {
	wake chan struct{} // buffered 1: a position may have changed, or a slot freed
}

func newFIFO() *fifo {
	return &fifo{lines: map[ModelKey][]*waiter{}, mean: map[ModelKey]time.Duration{}}
}

func (q *fifo) join(k ModelKey) *waiter {
	w := &waiter{wake: make(chan struct{}, 1)}
	q.mu.Lock()
	q.lines[k] = append(q.lines[k], w)
	q.mu.Unlock()
	return w
}

// ahead is how many requests wait before w in its line.
func (q *fifo) ahead(k ModelKey, w *waiter) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.lines[k] {
		if x == w {
			return i
		}
	}
	return 0
}

// busy reports whether anyone waits for k: a new request then queues
// behind them instead of taking a slot that frees under their nose.
func (q *fifo) busy(k ModelKey) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.lines[k]) > 0
}

// leave takes w out of its line; everyone behind moves up one.
func (q *fifo) leave(k ModelKey, w *waiter) {
	q.mu.Lock()
	line := q.lines[k]
	for i, x := range line {
		if x == w {
			line = append(line[:i:i], line[i+1:]...)
			break
		}
	}
	if len(line) == 0 {
		delete(q.lines, k)
	} else {
		q.lines[k] = line
	}
	q.mu.Unlock()
	q.nudge(k)
}

// nudge wakes every waiter of k: positions changed or a slot freed.
func (q *fifo) nudge(k ModelKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, w := range q.lines[k] {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// observe folds one inference time into k's moving average (weight 1/8).
func (q *fifo) observe(k ModelKey, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if m, ok := q.mean[k]; ok {
		q.mean[k] = m + (d-m)/8
	} else {
		q.mean[k] = d
	}
}

func (q *fifo) meanInference(k ModelKey) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.mean[k]
}

// fifoLease wakes the head of its line when released, so a freed slot is
// taken at once rather than at the next poll.
type fifoLease struct {
	Lease
	q    *fifo
	k    ModelKey
	once sync.Once
}

func (l *fifoLease) Release() {
	l.once.Do(func() {
		l.Lease.Release()
		l.q.nudge(l.k)
	})
}

// reserveInLine takes a slot for (p, model), waiting in its FIFO line up to
// QueueTimeout (503 after, as before) behind at most MaxQueue waiters in
// all. onAhead, when set, is called with the number of requests ahead each
// time it changes, starting with the first. An unknown model is refused at
// once, as go-livepeer's capacity check does.
func (s *Server) reserveInLine(ctx context.Context, p capability.Pipeline, model string, onAhead func(ahead int)) (Lease, error) {
	k := ModelKey{Pipeline: p.Slug, Model: model}
	wrap := func(l Lease, err error) (Lease, error) {
		if err != nil {
			return nil, err
		}
		return &fifoLease{Lease: l, q: s.line, k: k}, nil
	}
	if !s.line.busy(k) {
		lease, err := s.runners.Reserve(ctx, p, model)
		if !errors.Is(err, ErrNoCapacity) || s.cfg.QueueTimeout == 0 {
			return wrap(lease, err)
		}
	} else if s.cfg.QueueTimeout == 0 {
		return nil, ErrNoCapacity
	}
	if s.queued.Add(1) > int64(s.cfg.MaxQueue) {
		s.queued.Add(-1)
		return nil, ErrNoCapacity
	}
	s.metrics.queueDepth.Inc()
	defer func() { s.queued.Add(-1); s.metrics.queueDepth.Dec() }()
	w := s.line.join(k)
	defer s.line.leave(k, w)
	deadline := time.NewTimer(s.cfg.QueueTimeout)
	defer deadline.Stop()
	// Runners has no release notification of its own (a Docker runner may
	// come back up), so the head also polls; a release through a fifoLease
	// wakes it at once.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := -1
	for {
		n := s.line.ahead(k, w)
		if n != last && onAhead != nil {
			onAhead(n)
		}
		last = n
		if n == 0 {
			lease, err := s.runners.Reserve(ctx, p, model)
			if !errors.Is(err, ErrNoCapacity) {
				return wrap(lease, err)
			}
		}
		select {
		case <-deadline.C:
			return nil, ErrNoCapacity
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		case <-w.wake:
		}
	}
}

// capacityOf is the served capacity of (p, model), at least 1.
func (s *Server) capacityOf(k ModelKey) int {
	for _, m := range s.runners.States() {
		if m.Pipeline.Slug == k.Pipeline && m.Model == k.Model && m.Capacity > 0 {
			return m.Capacity
		}
	}
	return 1
}
