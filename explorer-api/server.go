// Package explorerapi serves what the Explorer's AI leaderboard and people
// need beyond the raw leaderboard API: a network overview, leaderboard rows
// ready to render, orchestrator profiles that join scores, history and error
// classes with on-chain facts, and a built-in web leaderboard page. Scores
// come from leaderboard/score over leaderboard/store aggregates, so every
// number matches the leaderboard API for the same window.
package explorerapi

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

// Store is the leaderboard's data layer plus the explorer aggregates of
// leaderboard/store/explorer.go (*store.ClickHouse implements it).
type Store interface {
	store.Store
	ServerTimes(ctx context.Context, f store.Filter) ([]store.ServerTime, error)
	LastProbe(ctx context.Context, orchestrator string) (time.Time, error)
}

// Config tunes the handler; zero values take the defaults.
type Config struct {
	// Window is the score look-back when a request gives no since (24h).
	Window time.Duration
	// QueryTimeout bounds the store and chain time of one request (8s).
	QueryTimeout time.Duration
	// MaxWindow is the longest since..until a request may ask for (31
	// days): the store work of every page grows with it.
	MaxWindow time.Duration
	// Chain reads on-chain facts; nil when no chain is configured (profiles
	// then carry "on_chain": null).
	Chain  Chain
	Logger *slog.Logger
	// Now is the clock (tests pin it); time.Now when nil.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = 24 * time.Hour
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 8 * time.Second
	}
	if c.MaxWindow <= 0 {
		c.MaxWindow = 31 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

type server struct {
	cfg   Config
	store Store
}

// New returns the explorer-api handler: the JSON API under /api/ and the web
// leaderboard at /.
func New(cfg Config, st Store) http.Handler {
	cfg.defaults()
	s := &server{cfg: cfg, store: st}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/overview", s.overview)
	mux.HandleFunc("GET /api/leaderboard", s.leaderboard)
	mux.HandleFunc("GET /api/orchestrators/{address}", s.profile)
	mux.HandleFunc("GET /api/live", s.live)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such endpoint "+r.URL.Path+": see /api/overview, /api/leaderboard, /api/orchestrators/{address}, /api/live")
	})
	mux.Handle("/", staticHandler())
	return s.middleware(mux)
}

// middleware adds CORS, answers preflights and wrong methods with JSON,
// turns a panic into a JSON 500, and gzips for slow links.
func (s *server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Vary", "Accept-Encoding")
		switch r.Method {
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodGet, http.MethodHead:
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			fail(w, http.StatusMethodNotAllowed, r.Method+" not allowed: explorer-api is read-only (GET)")
			return
		}
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && r.Method == http.MethodGet {
			gz := gzipPool.Get().(*gzip.Writer)
			gz.Reset(w)
			defer func() { _ = gz.Close(); gzipPool.Put(gz) }()
			h.Set("Content-Encoding", "gzip")
			w = gzipWriter{ResponseWriter: w, w: gz}
		}
		defer func() {
			if v := recover(); v != nil {
				s.cfg.Logger.Error("panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v))
				fail(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression); return w }}

type gzipWriter struct {
	http.ResponseWriter
	w io.Writer
}

func (g gzipWriter) Write(b []byte) (int, error) { return g.w.Write(b) }

// WriteHeader drops any Content-Length a handler set (it counts the
// uncompressed bytes) and puts Content-Encoding back when a handler's error
// path removed it (http.FileServer's does): the body is gzip either way.
func (g gzipWriter) WriteHeader(code int) {
	g.Header().Del("Content-Length")
	g.Header().Set("Content-Encoding", "gzip")
	g.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error: unencodable answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "public, max-age=30, stale-while-revalidate=15")
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": msg})
}

// storeFailed answers a store error: 504 when the request ran out of time,
// 503 otherwise; the detail goes to the log, not to the client.
func (s *server) storeFailed(w http.ResponseWriter, what string, err error) {
	s.cfg.Logger.Warn("store query failed", "query", what, "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		fail(w, http.StatusGatewayTimeout, "the result store took too long ("+what+"); try a shorter window")
		return
	}
	fail(w, http.StatusServiceUnavailable, "the result store does not answer ("+what+")")
}

func (s *server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
}

var addressRE = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)

// params are the shared query parameters.
type params struct {
	window          store.Window
	pipeline, model string
	region          string
}

// parseParams reads since/until (unix seconds, fractions allowed; default the
// last cfg.Window), pipeline+model (both or neither) and region (a catalogue
// code or GLOBAL; defaultRegion when absent).
func (s *server) parseParams(q url.Values, defaultRegion string) (params, error) {
	var p params
	now := s.cfg.Now()
	p.window.Until = now
	for _, name := range []string{"since", "until"} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		t, err := parseUnix(name, v)
		if err != nil {
			return p, err
		}
		if name == "since" {
			p.window.Since = t
		} else {
			p.window.Until = t
		}
	}
	if p.window.Since.IsZero() {
		p.window.Since = p.window.Until.Add(-s.cfg.Window)
	}
	if p.window.Since.After(p.window.Until) {
		return p, errors.New("since is after until")
	}
	if w := p.window.Until.Sub(p.window.Since); w > s.cfg.MaxWindow {
		return p, fmt.Errorf("since..until spans %s: at most %s per request; ask for a shorter window", w.Round(time.Second), s.cfg.MaxWindow)
	}
	p.pipeline, p.model = q.Get("pipeline"), q.Get("model")
	if (p.pipeline == "") != (p.model == "") {
		return p, errors.New("pipeline and model go together: give both or neither (see /api/overview for the pairs)")
	}
	p.region = strings.ToUpper(strings.TrimSpace(q.Get("region")))
	if p.region == "" {
		p.region = defaultRegion
	}
	if p.region != "" {
		if _, ok := regions.Lookup(p.region); !ok {
			return p, fmt.Errorf("unknown region %q: want GLOBAL or one of %s", p.region, strings.Join(regions.Codes(regions.AI), ", "))
		}
	}
	return p, nil
}

func parseUnix(name, v string) (time.Time, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1<<32 || f != f {
		return time.Time{}, fmt.Errorf("%s=%q: want unix seconds (a number, fractions allowed)", name, v)
	}
	return time.UnixMilli(int64(f * 1000)).UTC(), nil
}

// unix is t in unix seconds, 0 for the zero time.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
