// Package api serves the leaderboard over HTTP with gin: the endpoints,
// parameters and JSON shapes of livepeer/leaderboard-serverless (so the
// Livepeer Explorer and tools.livepeer.cloud work unchanged), plus additive
// fields and endpoints. Every bad request gets a 400 with a JSON error that
// says what to change; a store outage gets a 503, never a stack trace.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/schemas/openapi"
)

// Config tunes the API. Zero values take the defaults below.
type Config struct {
	// Window is the default look-back when since is absent (24 h, as
	// leaderboard-serverless's START_TIME_WINDOW).
	Window time.Duration
	// QueryTimeout bounds the store work of one request (8 s: the Explorer
	// gives up on an attempt after 10 s).
	QueryTimeout time.Duration
	// RawLimit is the default and MaxRawLimit the largest row count of
	// raw_stats (leaderboard-serverless has no limit; an unbounded answer
	// can exhaust memory on either side).
	RawLimit    int
	MaxRawLimit int
	// Secret is the shared post_stats HMAC key (post_stats is refused when
	// empty); MaxPostBytes bounds its body (DefaultMaxPostBytes when 0).
	Secret       string
	MaxPostBytes int64
	// Keys are per-tester post keys (key id → secret and regions) for the
	// signed mode: X-Lpgauge-Key, X-Lpgauge-Timestamp, X-Lpgauge-Nonce, and
	// Authorization = hex HMAC-SHA256(secret, timestamp + "\n" + nonce +
	// "\n" + body). A key posts only for its regions.
	Keys map[string]PostKey
	// Plausibility bounds what a post may claim (RTT, timestamp).
	Plausibility Plausibility
	// MaxWindow is the longest since..until a read may ask for (31 days):
	// every answer's work and memory grow with it.
	MaxWindow time.Duration
	// MaxSkew is how far a signed post's timestamp may be from now (5 min).
	MaxSkew time.Duration
	// MaxStale is how old a cached answer may be and still be served, marked
	// stale, while the store is down (24 h); CacheEntries bounds how many
	// distinct requests are remembered (1024).
	MaxStale     time.Duration
	CacheEntries int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger receives one line per failed request (slog.Default when nil).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = 24 * time.Hour
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 8 * time.Second
	}
	if c.RawLimit <= 0 {
		c.RawLimit = 1000
	}
	if c.MaxRawLimit <= 0 {
		c.MaxRawLimit = 10000
	}
	if c.MaxPostBytes <= 0 {
		c.MaxPostBytes = DefaultMaxPostBytes
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = 5 * time.Minute
	}
	c.Plausibility.defaults()
	if c.MaxWindow <= 0 {
		c.MaxWindow = 31 * 24 * time.Hour
	}
	if c.MaxStale <= 0 {
		c.MaxStale = 24 * time.Hour
	}
	if c.CacheEntries <= 0 {
		c.CacheEntries = 1024
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg     Config
	store   store.Store
	cache   *answerCache
	metrics *metrics
}

// CacheControl is what every successful read carries: leaderboard-serverless's
// CDN policy.
const CacheControl = "public, max-age=30, stale-while-revalidate=15"

// New returns the HTTP handler of the leaderboard API over st.
func New(cfg Config, st store.Store) http.Handler {
	return headAsGet(newEngine(cfg, st))
}

// newEngine is the gin engine behind New (its routes are the contract).
func newEngine(cfg Config, st store.Store) *gin.Engine {
	cfg.defaults()
	s := &Server{cfg: cfg, store: st, cache: newAnswerCache(cfg.CacheEntries, cfg.MaxStale), metrics: newMetrics()}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// A raw query such as "model=ByteDance/SDXL-Lightning" must reach the
	// handlers as sent; gin must not treat the escaped path specially.
	r.UseRawPath = false
	r.Use(s.metrics.instrument, s.recoverJSON, standardHeaders)
	r.NoRoute(func(c *gin.Context) {
		fail(c, http.StatusNotFound, "no such endpoint "+c.Request.URL.Path+": see the leaderboard README for the list")
	})
	r.NoMethod(func(c *gin.Context) {
		fail(c, http.StatusMethodNotAllowed, "method "+c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	r.GET("/healthz", s.healthz)
	r.GET("/api/health", s.health)
	r.GET("/metrics", s.metrics.handler())
	r.GET("/api/openapi.yaml", serveOpenAPI)
	// Reads from the store: a store outage serves the last good answer, stale.
	read := r.Group("", s.staleOnStoreFailure)
	read.GET("/api/regions", s.regions)
	read.GET("/api/pipelines", s.pipelines)
	read.GET("/api/aggregated_stats", s.aggregatedStats)
	read.GET("/api/raw_stats", s.rawStats)
	read.GET("/api/top_ai_score", s.topAIScore)
	read.GET("/api/percentiles", s.percentiles)
	read.GET("/api/history", s.history)
	read.GET("/api/errors", s.errorsBreakdown)
	read.GET("/api/flags", s.flags)
	read.GET("/api/live_stats", s.liveStats)
	read.GET("/api/perf_scores", s.perfScores)
	read.GET("/api/blocklist", s.blocklist)
	read.GET("/api/orchestrators", s.orchestrators)
	r.POST("/api/post_stats", s.postStats)
	return r
}

// headAsGet answers HEAD on every GET route with the GET answer's status and
// headers (net/http drops the body of a HEAD answer), as RFC 9110 §9.3.2
// asks; gin would answer 405.
func headAsGet(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			r = r.Clone(r.Context())
			r.Method = http.MethodGet
		}
		next.ServeHTTP(w, r)
	})
}

// standardHeaders sets leaderboard-serverless's headers on every answer and
// answers CORS preflight itself (upstream fell through into the handler).
func standardHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", CacheControl)
	if c.Request.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Lpgauge-Key, X-Lpgauge-Timestamp, X-Lpgauge-Nonce")
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}

// recoverJSON turns a panic into a logged 500 with a JSON body: the stack
// goes to the log, never to the client.
func (s *Server) recoverJSON(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			s.cfg.Logger.Error("panic in handler", "path", c.Request.URL.Path, "panic", v)
			fail(c, http.StatusInternalServerError, "internal error")
		}
	}()
	c.Next()
}

type errorBody struct {
	Error string `json:"error"`
}

// fail writes {"error": msg}. No error is cached by a CDN: a 400 for one
// client's bad parameters, or a 503 while the store restarts, must not be
// what the next client gets.
func fail(c *gin.Context, status int, msg string) {
	c.Header("Cache-Control", "no-store")
	writeJSON(c, status, errorBody{Error: msg})
	c.Abort()
}

// writeJSON encodes with encoding/json, like leaderboard-serverless: map keys
// (addresses, region codes) come out sorted and Content-Type stays exactly
// application/json.
func writeJSON(c *gin.Context, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error: response could not be encoded"}`)
	}
	c.Data(status, "application/json", b)
}

// storeFailed answers a store error: 504 when this request ran out of time,
// 503 otherwise. The detail goes to the log only.
// aggregates is Store.Aggregates for a handler: when the store fails it has
// answered the request (storeFailed) and returns false.
func (s *Server) aggregates(ctx context.Context, c *gin.Context, f store.Filter) ([]store.Aggregate, bool) {
	aggs, err := s.store.Aggregates(ctx, f)
	if err != nil {
		s.storeFailed(c, "aggregates", err)
		return nil, false
	}
	return aggs, true
}

func (s *Server) storeFailed(c *gin.Context, what string, err error) {
	if errors.Is(err, store.ErrTooLarge) {
		s.cfg.Logger.Warn("store query refused by its limits", "endpoint", c.FullPath(), "what", what, "err", err)
		fail(c, http.StatusBadRequest, "this answer would be larger than one request may read: narrow the window (since/until) or filter by pipeline, model, region or orchestrator")
		return
	}
	s.cfg.Logger.Error("store query failed", "endpoint", c.FullPath(), "what", what, "err", err)
	s.metrics.storeErrors.WithLabelValues(what).Inc()
	c.Set(storeFailedKey, true)
	if errors.Is(err, context.DeadlineExceeded) {
		fail(c, http.StatusGatewayTimeout, "the result store did not answer in time; try again, or narrow the window (since/until)")
		return
	}
	fail(c, http.StatusServiceUnavailable, "the result store is unavailable; try again shortly")
}

func (s *Server) queryCtx(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), s.cfg.QueryTimeout)
}

// serveOpenAPI serves the OpenAPI 3 description of every endpoint.
func serveOpenAPI(c *gin.Context) {
	c.Header("Content-Type", "application/yaml")
	c.Data(http.StatusOK, "application/yaml", openapi.Leaderboard)
}
