// Package trickle is go-livepeer's trickle protocol, both ends: the channel
// server an orchestrator mounts at /ai/trickle/, and the publisher and
// subscriber clients a gateway and a live runner use. Status codes, headers
// and retention follow go-livepeer trickle/trickle_server.go,
// trickle_publisher.go and trickle_subscriber.go at commit 176aa415c (facts
// cited as file:line; the captured exchanges are in
// conformance/testdata/go-livepeer-live/trickle/).
package trickle

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Header names of the protocol (trickle_server.go:493-497,604-607,641-664).
const (
	HeaderSeq    = "Lp-Trickle-Seq"
	HeaderLatest = "Lp-Trickle-Latest"
	HeaderClosed = "Lp-Trickle-Closed"
	HeaderReset  = "Lp-Trickle-Reset"
)

// StatusSequenceNonexistent is the "channel exists, segment does not" status
// (trickle_server.go:610).
const StatusSequenceNonexistent = 470

// ringSize is go-livepeer's maxSegmentsPerStream (trickle_server.go:92): a
// channel holds the last five segments, indexed by seq % 5.
const ringSize = 5

// firstByteKeepalive is how long a POST waits for its first byte before the
// server sends an interim 100 Continue (trickle_server.go:452,478-482); a
// variable only so a test need not wait 10 s.
var firstByteKeepalive = 10 * time.Second

// maxSeq keeps seq+1 far from overflow; go-livepeer has no such bound (a seq
// past it is answered 400 here instead of wrapping).
const maxSeq = 1 << 53

// Defaults of ServerConfig. IdleTimeout and SweepInterval are go-livepeer's
// (trickle_server.go:126-131); the bounds are ours: go-livepeer has none.
const (
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultSweepInterval   = time.Minute
	DefaultMaxSegmentBytes = 16 << 20
	DefaultMaxChannels     = 1024
	DefaultMaxWaiting      = 64
)

// ServerConfig configures a trickle Server. Zero fields take the defaults
// above. The bounds are the server's alone: no request can move them.
type ServerConfig struct {
	// BasePath is the URL prefix of the routes, with a trailing slash
	// ("/ai/trickle/" on an orchestrator, server/ai_http.go:42).
	BasePath string
	// IdleTimeout closes a channel that has received no new segment for this
	// long; SweepInterval is how often channels are checked.
	IdleTimeout, SweepInterval time.Duration
	// MaxSegmentBytes bounds one segment's body; a longer POST is answered 413.
	MaxSegmentBytes int64
	// MaxChannels bounds the channels open at once; CreateChannel fails past it.
	MaxChannels int
	// MaxWaiting bounds the requests one channel holds open at once
	// (preconnected GETs and POSTs, streaming reads); more are answered 429.
	MaxWaiting int
}

// ErrTooManyChannels is returned by CreateChannel when MaxChannels are open.
var ErrTooManyChannels = errors.New("trickle: too many channels")

// ErrChannelExists is returned by CreateChannel for a name already open.
var ErrChannelExists = errors.New("trickle: channel exists")

// Server holds trickle channels and serves them over HTTP. Only the process
// that owns the Server creates channels (CreateChannel): go-livepeer's
// orchestrator leaves autocreate off, so an HTTP POST to an unknown channel is
// 404 (trickle_server.go:329-360).
type Server struct {
	cfg       ServerConfig
	keepalive time.Duration // firstByteKeepalive when created

	mu       sync.Mutex
	channels map[string]*channel

	stopOnce sync.Once
	stop     chan struct{}
	swept    chan struct{}

	// Counters for tests and bounds: requests inside ServeHTTP, and those
	// blocked waiting for data or a close.
	arrivals atomic.Int64
	inflight atomic.Int64
	blocked  atomic.Int64
}

type channel struct {
	name, mime string

	mu        sync.Mutex
	ring      [ringSize]*segment
	nextWrite int
	writeTime time.Time
	closed    bool
	held      int // requests of this channel inside ServeHTTP
}

type segment struct {
	seq int

	mu      sync.Mutex
	buf     []byte
	closed  bool
	changed chan struct{} // closed and replaced on every write and on close
	done    chan struct{} // closed once, on close
	posters int           // POSTs waiting for their first byte on this segment

	// Releases of the requests blocked on this segment, called under mu by
	// the write or close that wakes them: the server's blocked count then
	// never counts a request that has been woken (Server.blocked).
	readers []func() // woken by a write or a close
	writers []func() // woken by a close
}

func newSegment(seq int) *segment {
	return &segment{seq: seq, changed: make(chan struct{}), done: make(chan struct{})}
}

// fresh says no byte was written and the segment is open: a preconnect.
func (g *segment) fresh() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.closed && len(g.buf) == 0
}

func (g *segment) wake(fs []func()) []func() {
	for _, f := range fs {
		f()
	}
	return fs[:0]
}

// write appends p; it reports false, and appends nothing, once the segment
// is closed (a finished segment never grows).
func (g *segment) write(p []byte) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.buf = append(g.buf, p...)
	close(g.changed)
	g.changed = make(chan struct{})
	g.readers = g.wake(g.readers)
	g.mu.Unlock()
	return true
}

func (g *segment) close() {
	if g == nil {
		return
	}
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.done)
		close(g.changed)
		g.changed = make(chan struct{})
		g.readers = g.wake(g.readers)
		g.writers = g.wake(g.writers)
	}
	g.mu.Unlock()
}

// read returns the bytes from pos on, whether the segment is closed, and a
// channel that is closed when either changes; with nothing to return it
// registers release to be called by that change.
func (g *segment) read(pos int, release func()) ([]byte, bool, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if pos > len(g.buf) {
		return nil, true, nil
	}
	if pos == len(g.buf) && !g.closed {
		g.readers = append(g.readers, release)
	}
	return g.buf[pos:len(g.buf):len(g.buf)], g.closed, g.changed
}

// waitWrite registers a POST waiting for its first byte; release is called
// when the segment closes. It reports false if the segment is closed.
func (g *segment) waitWrite(release func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.posters++
	g.writers = append(g.writers, release)
	return true
}

// hold counts a request as blocked until the returned release is called
// (once; later calls do nothing).
func (s *Server) hold() func() {
	s.blocked.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			s.blocked.Add(-1)
		}
	}
}

// NewServer returns a Server and starts its idle sweeper; Stop ends it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.BasePath == "" {
		cfg.BasePath = "/"
	}
	if !strings.HasSuffix(cfg.BasePath, "/") {
		cfg.BasePath += "/"
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.MaxSegmentBytes <= 0 {
		cfg.MaxSegmentBytes = DefaultMaxSegmentBytes
	}
	if cfg.MaxChannels <= 0 {
		cfg.MaxChannels = DefaultMaxChannels
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = DefaultMaxWaiting
	}
	s := &Server{cfg: cfg, keepalive: firstByteKeepalive, channels: map[string]*channel{}, stop: make(chan struct{}), swept: make(chan struct{})}
	go s.sweep()
	return s
}

// Config returns the configuration with defaults applied.
func (s *Server) Config() ServerConfig { return s.cfg }

// sweep closes idle channels every SweepInterval (trickle_server.go:161-180,232-253).
func (s *Server) sweep() {
	defer close(s.swept)
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			var idle []string
			for name, c := range s.channels {
				c.mu.Lock()
				if now.Sub(c.writeTime) > s.cfg.IdleTimeout {
					idle = append(idle, name)
				}
				c.mu.Unlock()
			}
			s.mu.Unlock()
			for _, name := range idle {
				slog.Info("trickle: closed idle channel", "channel", name, "idle_timeout", s.cfg.IdleTimeout)
				s.CloseChannel(name)
			}
		}
	}
}

// Stop ends the sweeper and closes every channel: waiting requests are
// answered with Lp-Trickle-Closed. Stop is idempotent.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stop)
		<-s.swept
		s.mu.Lock()
		names := make([]string, 0, len(s.channels))
		for name := range s.channels {
			names = append(names, name)
		}
		s.mu.Unlock()
		for _, name := range names {
			s.CloseChannel(name)
		}
	})
}

// CreateChannel opens a channel whose readers get mimeType as Content-Type
// (server/ai_http.go:1075-1082 creates mid, mid-out, mid-control, mid-events).
func (s *Server) CreateChannel(name, mimeType string) error {
	if name == "" || strings.ContainsAny(name, "/?#") {
		return fmt.Errorf("trickle: channel name %q must be non-empty without '/', '?' or '#'", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return errors.New("trickle: server stopped")
	default:
	}
	if _, ok := s.channels[name]; ok {
		return fmt.Errorf("create channel %s: %w", name, ErrChannelExists)
	}
	if len(s.channels) >= s.cfg.MaxChannels {
		return fmt.Errorf("create channel %s (limit %d): %w", name, s.cfg.MaxChannels, ErrTooManyChannels)
	}
	s.channels[name] = &channel{name: name, mime: mimeType, writeTime: time.Now()}
	return nil
}

// CloseChannel closes and removes a channel, as go-livepeer's closeStream
// (trickle_server.go:255-277): waiting readers and preconnected writers wake
// with Lp-Trickle-Closed, later requests get 404. Unknown names are ignored.
func (s *Server) CloseChannel(name string) {
	s.closeChannel(name)
}

func (s *Server) closeChannel(name string) bool {
	s.mu.Lock()
	c, ok := s.channels[name]
	delete(s.channels, name)
	s.mu.Unlock()
	if !ok {
		return false
	}
	c.mu.Lock()
	c.closed = true
	// A preconnected POST released by the close advances nextWrite before it
	// answers (trickle_server.go:485-492); doing it here, before any reader
	// wakes, makes the Lp-Trickle-Latest those readers see deterministic.
	for _, g := range c.ring {
		if g != nil {
			g.mu.Lock()
			if g.posters > 0 && len(g.buf) == 0 && !g.closed && g.seq+1 > c.nextWrite {
				c.nextWrite = g.seq + 1
			}
			g.mu.Unlock()
		}
	}
	ring := c.ring
	c.ring = [ringSize]*segment{}
	c.mu.Unlock()
	for _, g := range ring {
		g.close()
	}
	return true
}

// LastWrite is when the channel last received the first byte of a segment
// (go-livepeer's writeTime, trickle_server.go:463-468); false if unknown.
func (s *Server) LastWrite(name string) (time.Time, bool) {
	c, ok := s.channel(name)
	if !ok {
		return time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeTime, true
}

func (s *Server) channel(name string) (*channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channels[name]
	return c, ok
}

// ServeHTTP serves the routes of trickle_server.go:152-157 under BasePath.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.arrivals.Add(1)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)

	rest, ok := strings.CutPrefix(r.URL.Path, s.cfg.BasePath)
	if !ok || rest == "" {
		http.Error(w, "Not a trickle channel: use "+s.cfg.BasePath+"{channel}/{seq}", http.StatusNotFound)
		return
	}
	name, seqText, hasSeq := strings.Cut(rest, "/")
	if hasSeq && (seqText == "" || strings.Contains(seqText, "/")) {
		http.Error(w, "Not a trickle route: use "+s.cfg.BasePath+"{channel}/{seq}", http.StatusNotFound)
		return
	}
	if !hasSeq {
		switch r.Method {
		case http.MethodPost:
			// HTTP creation needs autocreate, which go-livepeer's orchestrator
			// leaves off (trickle_server.go:329-343).
			http.Error(w, "Stream not found", http.StatusNotFound)
		case http.MethodDelete:
			if !s.closeChannel(name) {
				http.Error(w, "Invalid stream", http.StatusBadRequest) // trickle_server.go:301-303
			}
		default:
			w.Header().Set("Allow", "POST, DELETE")
			http.Error(w, "Method not allowed on a channel: use GET/POST "+s.cfg.BasePath+name+"/{seq} or DELETE", http.StatusMethodNotAllowed)
		}
		return
	}
	c, ok := s.channel(name)
	if !ok {
		if r.Method == http.MethodPost {
			// Wakes preconnected publishers (trickle_server.go:356-358).
			w.Header().Set("Connection", "close")
		}
		http.Error(w, "Stream not found", http.StatusNotFound)
		return
	}
	if r.Method == http.MethodGet && seqText == "next" {
		s.serveNext(w, c)
		return
	}
	// go-livepeer indexes its ring with seq % 5 and panics on seq < -2 (GET),
	// < -1 (POST) or < 0 (DELETE); those are 400 here.
	minSeq, known := map[string]int{http.MethodGet: -2, http.MethodPost: -1, http.MethodDelete: 0}[r.Method]
	if !known {
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "Method not allowed on a segment: use GET, POST or DELETE", http.StatusMethodNotAllowed)
		return
	}
	seq, err := strconv.Atoi(seqText)
	if err != nil || seq < minSeq || seq > maxSeq {
		http.Error(w, fmt.Sprintf("Invalid idx: %q is not a sequence number (an integer from %d to %d)", seqText, minSeq, maxSeq), http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodDelete {
		s.closeSeq(w, c, seq)
		return
	}
	c.mu.Lock()
	if c.held >= s.cfg.MaxWaiting {
		c.mu.Unlock()
		if r.Method == http.MethodPost {
			w.Header().Set("Connection", "close")
		}
		http.Error(w, fmt.Sprintf("Too many requests held on channel %s (limit %d): read or write the pending segments first", name, s.cfg.MaxWaiting), http.StatusTooManyRequests)
		return
	}
	c.held++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.held--
		c.mu.Unlock()
	}()
	if r.Method == http.MethodGet {
		s.serveGet(w, r, c, seq)
	} else {
		s.servePost(w, r, c, seq)
	}
}

// serveNext answers GET /{channel}/next (trickle_server.go:582-599).
func (s *Server) serveNext(w http.ResponseWriter, c *channel) {
	c.mu.Lock()
	next, closed := c.nextWrite, c.closed
	c.mu.Unlock()
	w.Header().Set(HeaderLatest, strconv.Itoa(next))
	if closed {
		w.Header().Set(HeaderClosed, "terminated")
	}
	_, _ = io.WriteString(w, strconv.Itoa(next))
}

// closeSeq answers DELETE /{channel}/{seq} (trickle_server.go:307-327).
func (s *Server) closeSeq(w http.ResponseWriter, c *channel, seq int) {
	c.mu.Lock()
	g := c.ring[seq%ringSize]
	c.mu.Unlock()
	if g == nil || g.seq != seq {
		http.Error(w, "Nonexistent segment", http.StatusBadRequest)
		return
	}
	g.close()
}

// forWrite resolves seq -1 to nextWrite and returns the segment to write,
// reusing a preconnected (fresh) one and replacing anything else in the slot
// (trickle_server.go:518-537). go-livepeer also reuses a segment that was
// already written, appending a second body to the first; here a re-POST of a
// written seq replaces it, so later readers get one whole body.
func (c *channel) forWrite(seq int) *segment {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq == -1 {
		seq = c.nextWrite
	}
	pos := seq % ringSize
	if g := c.ring[pos]; g != nil {
		if g.seq == seq && g.fresh() {
			return g
		}
		g.close()
	}
	g := newSegment(seq)
	c.ring[pos] = g
	return g
}

// forRead resolves -1 (next write) and -2 (current write) and precreates the
// segment a reader is just ahead of (trickle_server.go:539-566).
func (c *channel) forRead(seq int) (g *segment, resolved, latest int, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch seq {
	case -1:
		seq = c.nextWrite
	case -2:
		seq = max(c.nextWrite-1, 0)
	}
	pos := seq % ringSize
	g = c.ring[pos]
	if (g == nil || g.seq != seq) && (seq == c.nextWrite || (c.nextWrite == 0 && seq == 1)) && !c.closed {
		g = newSegment(seq)
		c.ring[pos] = g
	}
	if g != nil && g.seq != seq {
		g = nil
	}
	return g, seq, c.nextWrite, c.closed
}

// advance records the first byte (or a released preconnect) of seq.
func (c *channel) advance(seq int) (closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// go-livepeer sets nextWrite to seq+1 even when that moves it back
	// (trickle_server.go:466,490); after a close, closeChannel has set it.
	if !c.closed {
		c.nextWrite = seq + 1
	}
	c.writeTime = time.Now()
	return c.closed
}

// serveGet answers GET /{channel}/{seq} (trickle_server.go:601-677).
func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, c *channel, seq int) {
	g, _, latest, closed := c.forRead(seq)
	if g == nil {
		w.Header().Set(HeaderLatest, strconv.Itoa(latest))
		w.Header().Set(HeaderSeq, strconv.Itoa(seq))
		if closed {
			w.Header().Set(HeaderClosed, "terminated")
		} else {
			w.WriteHeader(StatusSequenceNonexistent)
		}
		_, _ = io.WriteString(w, "Entry not found")
		return
	}
	rc := http.NewResponseController(w)
	pos := 0
	for {
		release := s.hold()
		data, eof, changed := g.read(pos, release)
		if len(data) > 0 || eof {
			release()
		}
		if len(data) > 0 {
			if pos == 0 {
				if g.seq != latest {
					w.Header().Set(HeaderLatest, strconv.Itoa(latest))
				}
				w.Header().Set(HeaderSeq, strconv.Itoa(g.seq))
				w.Header().Set("Content-Type", c.mime)
			}
			n, err := w.Write(data)
			pos += n
			if err != nil {
				return
			}
			_ = rc.Flush()
			continue
		}
		if eof {
			if pos == 0 {
				// Closed before any byte: dropped, replaced, reset or the
				// channel closed (trickle_server.go:654-666).
				c.mu.Lock()
				next, chClosed := c.nextWrite, c.closed
				c.mu.Unlock()
				w.Header().Set(HeaderSeq, strconv.Itoa(g.seq))
				w.Header().Set(HeaderLatest, strconv.Itoa(next))
				if chClosed {
					w.Header().Set(HeaderClosed, "terminated")
				}
				w.WriteHeader(http.StatusOK)
			}
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			release()
			return
		}
	}
}

type readResult struct {
	n   int
	err error
}

// servePost answers POST /{channel}/{seq} (trickle_server.go:430-516). The
// body is streamed into the segment as it arrives.
func (s *Server) servePost(w http.ResponseWriter, r *http.Request, c *channel, seq int) {
	g := c.forWrite(seq)
	if r.Header.Get(HeaderReset) != "" {
		// The publisher restarted: close older segments so their readers
		// stop waiting (trickle_server.go:433-444).
		c.mu.Lock()
		var older []*segment
		for _, o := range c.ring {
			if o != nil && o.seq < g.seq {
				older = append(older, o)
			}
		}
		c.mu.Unlock()
		for _, o := range older {
			o.close()
		}
	}

	// Wait for the first byte in a goroutine, so that a close of the segment
	// or channel can release a preconnected POST (trickle_server.go:408-419).
	buf := make([]byte, 32<<10)
	first := make(chan readResult, 1)
	release := s.hold()
	go func() {
		n, err := r.Body.Read(buf)
		release()
		first <- readResult{n, err}
	}()
	registered := g.waitWrite(release)
	unpost := func() {
		if registered {
			registered = false
			g.mu.Lock()
			g.posters--
			g.mu.Unlock()
		}
	}
	keepalive := time.NewTicker(s.keepalive)
	defer keepalive.Stop()
	// Released with no data: answer, then end the pending body read
	// (trickle_server.go:483-504).
	answerReleased := func(pending bool) {
		release()
		unpost()
		closed := c.advance(g.seq)
		w.Header().Set(HeaderSeq, strconv.Itoa(g.seq))
		if closed {
			w.Header().Set(HeaderClosed, "terminated")
		}
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		if rc.SetReadDeadline(time.Now()) == nil && pending {
			<-first
		}
	}
	var res readResult
	for waiting := true; waiting; {
		select {
		case res = <-first:
			waiting = false
			select {
			case <-g.done:
				// The segment closed (another writer finished it) before
				// this handler saw its first byte: released, not appended
				// to a finished segment. The client sees Connection: close
				// and re-POSTs.
				answerReleased(false)
				return
			default:
			}
		case <-g.done:
			answerReleased(true)
			return
		case <-keepalive.C:
			// Keeps preconnects alive through proxies (trickle_server.go:478-482).
			w.WriteHeader(http.StatusContinue)
		case <-r.Context().Done():
			release()
			unpost()
			<-first
			return
		}
	}
	unpost()

	total := int64(0)
	for {
		if res.n > 0 {
			if total == 0 {
				c.advance(g.seq)
			}
			total += int64(res.n)
			if total > s.cfg.MaxSegmentBytes {
				g.close()
				w.Header().Set("Connection", "close")
				http.Error(w, fmt.Sprintf("Segment too large: more than %d bytes; send shorter segments", s.cfg.MaxSegmentBytes), http.StatusRequestEntityTooLarge)
				return
			}
			if !g.write(buf[:res.n]) {
				if total == int64(res.n) {
					// Closed between the first byte and its write: as
					// released above.
					answerReleased(false)
					return
				}
				// Closed mid-body (the channel ended or a newer
				// writer replaced this seq): the rest has nowhere to go.
				w.Header().Set("Connection", "close")
				http.Error(w, "Segment closed while it was being written", http.StatusConflict)
				return
			}
		}
		if res.err == io.EOF {
			break
		}
		if res.err != nil {
			g.close()
			if total == 0 {
				// An empty body (not a preconnect): nothing to publish.
				break
			}
			// go-livepeer answers 500 here (trickle_server.go:506-508); a
			// broken upload is the client's fault, so 400.
			http.Error(w, "Segment body read failed: "+res.err.Error(), http.StatusBadRequest)
			return
		}
		if res.n == len(buf) && len(buf) < 1<<20 {
			buf = make([]byte, 2*len(buf))
		}
		res.n, res.err = r.Body.Read(buf)
	}
	if total == 0 {
		// The body ended without a byte: go-livepeer answers as for a
		// released preconnect (trickle_server.go:483-504).
		closed := c.advance(g.seq)
		g.close()
		w.Header().Set(HeaderSeq, strconv.Itoa(g.seq))
		if closed {
			w.Header().Set(HeaderClosed, "terminated")
		}
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set(HeaderSeq, strconv.Itoa(g.seq))
	g.close()
}
