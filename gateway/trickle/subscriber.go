package trickle

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SequenceNonexistentError is a 470: the channel exists but does not hold
// the seq asked for (too old or too far ahead). Callers jump to Latest with
// SetSeq (go-livepeer's SequenceNonexistent, trickle_subscriber.go:48-55;
// server/ai_live_video.go:297-301).
type SequenceNonexistentError struct {
	Latest int
	Seq    int
}

func (e *SequenceNonexistentError) Error() string {
	return fmt.Sprintf("trickle: channel exists but seq %d does not (latest %d)", e.Seq, e.Latest)
}

// Segment is one segment being read: Body streams as the publisher writes
// and must be closed. Header holds the Lp-Trickle-* headers of the answer.
type Segment struct {
	Seq    int
	Body   io.ReadCloser
	Header http.Header
}

// PreconnectRefresh is how long a preconnected GET may wait before it is
// cancelled and sent again (trickle_subscriber.go:57,184-217).
const PreconnectRefresh = 20 * time.Second

// maxPreconnectErrors: more failed preconnects in a row than this is fatal
// (trickle_subscriber.go:229-233).
const maxPreconnectErrors = 5

// Subscriber reads a channel URL segment by segment, preconnecting the GET of
// the next seq as soon as a segment's headers arrive, as go-livepeer's
// TrickleSubscriber (trickle_subscriber.go:219-292). Read is not safe for
// concurrent use; Close may be called from any goroutine.
type Subscriber struct {
	url    string
	client *http.Client

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	seq     int
	pending chan getResult
	errs    int
}

type getResult struct {
	resp *http.Response
	err  error
}

// NewSubscriber returns a Subscriber for url starting at startSeq (-1 = the
// live edge, -2 = the segment being written). A nil client means
// http.DefaultClient.
func NewSubscriber(url string, c *http.Client, startSeq int) *Subscriber {
	if c == nil {
		c = http.DefaultClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Subscriber{url: strings.TrimSuffix(url, "/"), client: c, ctx: ctx, cancel: cancel, seq: startSeq}
}

// SetSeq makes the next Read ask for seq, dropping any preconnect (after a
// SequenceNonexistentError, SetSeq(err.Latest) jumps to the live edge).
func (s *Subscriber) SetSeq(seq int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	s.seq = seq
	s.errs = 0
}

// Close ends the pending preconnect; later Reads fail.
func (s *Subscriber) Close() {
	s.cancel()
	s.mu.Lock()
	s.drop()
	s.mu.Unlock()
}

func (s *Subscriber) drop() {
	if s.pending == nil {
		return
	}
	ch := s.pending
	s.pending = nil
	go func() {
		if r := <-ch; r.resp != nil {
			_ = r.resp.Body.Close()
		}
	}()
}

// connect GETs seq in the background, refreshing a GET that waits longer
// than PreconnectRefresh. The result arrives on the returned channel.
func (s *Subscriber) connect(seq int) chan getResult {
	out := make(chan getResult, 1)
	url := s.url + "/" + strconv.Itoa(seq)
	go func() {
		for {
			ctx, cancel := context.WithCancel(s.ctx)
			got := make(chan getResult, 1)
			go func() {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					got <- getResult{err: fmt.Errorf("trickle: build GET: %w", err)}
					return
				}
				resp, err := s.client.Do(req)
				if err != nil {
					err = fmt.Errorf("trickle: GET %s: %w", url, err)
				}
				got <- getResult{resp: resp, err: err}
			}()
			timer := time.NewTimer(PreconnectRefresh)
			select {
			case r := <-got:
				timer.Stop()
				if r.resp != nil {
					// The body outlives this loop; cancel with the subscriber.
					r.resp.Body = &cancelOnClose{ReadCloser: r.resp.Body, cancel: cancel}
				} else {
					cancel()
				}
				out <- r
				return
			case <-timer.C:
				cancel()
				if r := <-got; r.resp != nil {
					_ = r.resp.Body.Close()
				}
			case <-s.ctx.Done():
				cancel()
				if r := <-got; r.resp != nil {
					_ = r.resp.Body.Close()
				}
				out <- getResult{err: fmt.Errorf("trickle: subscriber closed: %w", s.ctx.Err())}
				return
			}
		}
	}()
	return out
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Read returns the next segment. It fails with ErrEOS when the channel was
// closed, ErrStreamNotFound on a 404 and *SequenceNonexistentError on a 470
// (trickle_subscriber.go:251-263).
func (s *Subscriber) Read(ctx context.Context) (*Segment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errs > maxPreconnectErrors {
		return nil, fmt.Errorf("trickle: %d failed GETs in a row on %s", s.errs, s.url)
	}
	ch := s.pending
	s.pending = nil
	if ch == nil {
		ch = s.connect(s.seq)
	}
	var r getResult
	select {
	case r = <-ch:
	case <-ctx.Done():
		s.pending = ch // still valid for the next Read
		return nil, fmt.Errorf("trickle: read seq %d: %w", s.seq, ctx.Err())
	}
	if r.err != nil {
		s.errs++
		return nil, r.err
	}
	s.errs = 0
	resp := r.resp
	if resp.Header.Get(HeaderClosed) != "" {
		_ = resp.Body.Close()
		return nil, ErrEOS
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		_ = resp.Body.Close()
		return nil, ErrStreamNotFound
	case StatusSequenceNonexistent:
		_ = resp.Body.Close()
		e := &SequenceNonexistentError{Seq: s.seq, Latest: -1}
		if v, err := strconv.Atoi(resp.Header.Get(HeaderSeq)); err == nil {
			e.Seq = v
		}
		if v, err := strconv.Atoi(resp.Header.Get(HeaderLatest)); err == nil {
			e.Latest = v
		}
		return nil, e
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		s.errs++
		return nil, &HTTPError{Code: resp.StatusCode, Body: string(body)}
	}
	seq, err := strconv.Atoi(resp.Header.Get(HeaderSeq))
	if err != nil {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("trickle: answer without a valid %s header (%q)", HeaderSeq, resp.Header.Get(HeaderSeq))
	}
	s.seq = seq + 1
	s.pending = s.connect(s.seq)
	return &Segment{Seq: seq, Body: resp.Body, Header: resp.Header}, nil
}
