package trickle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// ErrStreamNotFound is a 404: the channel is unknown or was closed and removed
// (go-livepeer's StreamNotFoundErr, trickle_publisher.go:14,120-122).
var ErrStreamNotFound = errors.New("trickle: stream not found")

// ErrEOS is an answer with Lp-Trickle-Closed: the channel was closed
// (go-livepeer's EOS, trickle_subscriber.go:46, trickle_publisher.go:104-116).
var ErrEOS = errors.New("trickle: end of stream")

// HTTPError is any other status of 400 or more (trickle_publisher.go:27-35).
type HTTPError struct {
	Code int
	Body string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("trickle: status %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// Publisher writes one segment per Write to a channel URL
// ("…/ai/trickle/<channel>"), from seq 0 up, always with the next POST
// preconnected, as go-livepeer's TricklePublisher (trickle_publisher.go:57-194).
// It sends Content-Type video/MP2T on every channel, as go-livepeer does
// (trickle_publisher.go:64,92). Write and Close may be called from different
// goroutines; Writes are serialised.
type Publisher struct {
	url    string
	client *http.Client

	ctx    context.Context // ends pending preconnects on Close
	cancel context.CancelFunc

	mu      sync.Mutex
	next    int
	pending *pendingPost
}

type pendingPost struct {
	seq   int
	body  *io.PipeWriter
	resp  chan postResult
	wrote bool
}

type postResult struct {
	seq  int
	err  error
	code int
	// released says the server answered before reading any byte: the segment
	// was written by someone else, dropped or the channel closed.
	released bool
	// transport says the POST failed below HTTP (broken pipe, reset): a
	// released preconnect whose connection the server closed while our bytes
	// were on their way looks like this, so it is retried as released is.
	transport bool
}

// NewPublisher returns a Publisher for url (no trailing slash) and preconnects
// seq 0 at once, as go-livepeer's constructor does (trickle_publisher.go:68-72).
// A nil client means http.DefaultClient.
func NewPublisher(url string, c *http.Client) *Publisher {
	if c == nil {
		c = http.DefaultClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{url: strings.TrimSuffix(url, "/"), client: c, ctx: ctx, cancel: cancel}
	p.mu.Lock()
	p.pending = p.preconnect(0)
	p.next = 1
	p.mu.Unlock()
	return p
}

// preconnect opens a POST for seq whose body is a pipe with no data yet.
func (p *Publisher) preconnect(seq int) *pendingPost {
	pr, pw := io.Pipe()
	pp := &pendingPost{seq: seq, body: pw, resp: make(chan postResult, 1)}
	req, err := http.NewRequestWithContext(p.ctx, http.MethodPost, p.url+"/"+strconv.Itoa(seq), pr)
	if err != nil {
		pp.resp <- postResult{seq: seq, err: fmt.Errorf("trickle: build POST: %w", err)}
		return pp
	}
	req.Header.Set("Content-Type", "video/MP2T")
	go func() {
		resp, err := p.client.Do(req)
		if err != nil {
			_ = pr.CloseWithError(err)
			pp.resp <- postResult{seq: seq, err: fmt.Errorf("trickle: POST %s: %w", req.URL, err), transport: p.ctx.Err() == nil}
			return
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		_ = pr.CloseWithError(errors.New("trickle: server answered"))
		res := postResult{seq: seq, code: resp.StatusCode}
		if s, err := strconv.Atoi(resp.Header.Get(HeaderSeq)); err == nil {
			res.seq = s
		}
		switch {
		case resp.Header.Get(HeaderClosed) != "":
			res.err = ErrEOS
		case resp.StatusCode == http.StatusNotFound:
			res.err = ErrStreamNotFound
		case resp.StatusCode >= 400:
			res.err = &HTTPError{Code: resp.StatusCode, Body: string(body)}
		case resp.Header.Get("Connection") == "close" || resp.Close:
			res.released = true
		}
		pp.resp <- res
	}()
	return pp
}

// Write sends segment as the next seq and returns the seq the server stored it
// under. The POST for the following seq is opened first, so the server has
// it waiting when the next Write comes (trickle_publisher.go:171-194). A
// preconnect the server answered before any data (released by another
// writer of that seq) is retried once with a fresh POST of the same seq:
// go-livepeer's client would lose the segment without an error there
// (README section 9 of the conformance notes).
func (p *Publisher) Write(ctx context.Context, segment io.Reader) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pp := p.pending
	if pp == nil {
		pp = p.preconnect(p.next)
		p.next++
	}
	p.pending = p.preconnect(p.next)
	p.next++
	return p.write(ctx, pp, segment, true)
}

func (p *Publisher) write(ctx context.Context, pp *pendingPost, segment io.Reader, retry bool) (int, error) {
	// A retry must resend the whole segment: only a seekable one can be.
	seeker, seekable := segment.(io.Seeker)
	var start int64
	if seekable {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seekable = false
		}
	}
	rewind := func() bool {
		if !seekable {
			return false
		}
		_, err := seeker.Seek(start, io.SeekStart)
		return err == nil
	}
	// An answer before any data: a close, a 404, or a released preconnect.
	select {
	case res := <-pp.resp:
		_ = pp.body.Close()
		if res.err != nil && !(res.transport && retry) {
			return pp.seq, res.err
		}
		if retry {
			return p.write(ctx, p.preconnect(pp.seq), segment, false)
		}
		return pp.seq, fmt.Errorf("trickle: POST seq %d answered %d before any data", pp.seq, res.code)
	default:
	}
	pp.wrote = true
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(pp.body, segment)
		if err != nil {
			_ = pp.body.CloseWithError(err)
		} else {
			err = pp.body.Close()
		}
		copied <- err
	}()
	var res postResult
	select {
	case res = <-pp.resp:
	case <-ctx.Done():
		_ = pp.body.CloseWithError(ctx.Err())
		return pp.seq, fmt.Errorf("trickle: write seq %d: %w", pp.seq, ctx.Err())
	}
	copyErr := <-copied
	if res.transport && retry && ctx.Err() == nil && rewind() {
		// The connection broke under the body: the server may have released
		// this preconnect and closed it while we wrote. One fresh POST.
		return p.write(ctx, p.preconnect(pp.seq), segment, false)
	}
	if res.err != nil {
		return res.seq, fmt.Errorf("trickle: write seq %d: %w", pp.seq, res.err)
	}
	if res.released && retry && rewind() {
		// Answered before our bytes were read; try the seq again once.
		return p.write(ctx, p.preconnect(pp.seq), segment, false)
	}
	if copyErr != nil && !errors.Is(copyErr, io.ErrClosedPipe) {
		return res.seq, fmt.Errorf("trickle: write seq %d: %w", pp.seq, copyErr)
	}
	return res.seq, nil
}

// Close deletes the channel (DELETE <url>), as go-livepeer's publisher.Close
// (trickle_publisher.go:143-169), and ends the pending preconnect.
func (p *Publisher) Close(ctx context.Context) error {
	defer p.cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, p.url, nil)
	if err != nil {
		return fmt.Errorf("trickle: build DELETE: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("trickle: DELETE %s: %w", p.url, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	p.mu.Lock()
	if p.pending != nil {
		_ = p.pending.body.Close()
		p.pending = nil
	}
	p.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("trickle: DELETE %s: %w", p.url, &HTTPError{Code: resp.StatusCode, Body: string(body)})
	}
	return nil
}
