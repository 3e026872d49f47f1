package api

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// While the store is down, the last good answer to the same request is
// served instead of a 503/504, marked stale: X-Cache-Stale-Seconds says how
// old it is and Warning: 110 says it is stale (RFC 7234 §5.5.1). The
// Explorer keeps showing numbers through a ClickHouse restart.

// storeFailedKey marks a request whose store call failed (set by storeFailed).
const storeFailedKey = "lpgauge.store_failed"

type cachedAnswer struct {
	body        []byte
	contentType string
	at          time.Time
}

// answerCache holds the newest good answer per (route, query), bounded in
// entries and body size; the oldest entry goes first when full.
type answerCache struct {
	mu       sync.Mutex
	entries  map[string]cachedAnswer
	max      int
	maxBody  int
	maxStale time.Duration
}

func newAnswerCache(entries int, maxStale time.Duration) *answerCache {
	return &answerCache{entries: map[string]cachedAnswer{}, max: entries, maxBody: 8 << 20, maxStale: maxStale}
}

func (ac *answerCache) put(key string, a cachedAnswer) {
	if len(a.body) > ac.maxBody {
		return
	}
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if _, ok := ac.entries[key]; !ok && len(ac.entries) >= ac.max {
		var oldest string
		var t time.Time
		for k, e := range ac.entries {
			if oldest == "" || e.at.Before(t) {
				oldest, t = k, e.at
			}
		}
		delete(ac.entries, oldest)
	}
	ac.entries[key] = a
}

func (ac *answerCache) get(key string, now time.Time) (cachedAnswer, bool) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	a, ok := ac.entries[key]
	if !ok || now.Sub(a.at) > ac.maxStale {
		return cachedAnswer{}, false
	}
	return a, true
}

// captureWriter holds a handler's answer until the cache middleware decides
// whether to send it or a stale one.
type captureWriter struct {
	gin.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *captureWriter) WriteHeader(code int) {
	if code > 0 {
		w.status = code
	}
}
func (w *captureWriter) WriteHeaderNow() {}
func (w *captureWriter) Write(b []byte) (int, error) {
	return w.buf.Write(b)
}
func (w *captureWriter) WriteString(s string) (int, error) {
	return w.buf.WriteString(s)
}
func (w *captureWriter) Status() int {
	if w.status == 0 {
		return 200
	}
	return w.status
}
func (w *captureWriter) Size() int     { return w.buf.Len() }
func (w *captureWriter) Written() bool { return w.status != 0 || w.buf.Len() > 0 }

// staleOnStoreFailure is the middleware of every read endpoint.
func (s *Server) staleOnStoreFailure(c *gin.Context) {
	orig := c.Writer
	cw := &captureWriter{ResponseWriter: orig}
	c.Writer = cw
	defer func() { c.Writer = orig }() // a panic reaches recoverJSON with the real writer
	c.Next()
	c.Writer = orig
	key := c.FullPath() + "?" + c.Request.URL.Query().Encode()
	now := s.cfg.Now()
	switch {
	case cw.Status() == 200 && !c.GetBool(storeFailedKey):
		body := append([]byte(nil), cw.buf.Bytes()...)
		s.cache.put(key, cachedAnswer{body: body, contentType: orig.Header().Get("Content-Type"), at: now})
	case c.GetBool(storeFailedKey):
		if a, ok := s.cache.get(key, now); ok {
			age := int64(now.Sub(a.at) / time.Second)
			h := orig.Header()
			h.Set("Content-Type", a.contentType)
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Cache-Stale-Seconds", strconv.FormatInt(age, 10))
			h.Set("Warning", `110 - "Response is Stale"`)
			h.Set("Age", strconv.FormatInt(age, 10))
			h.Set("Content-Length", strconv.Itoa(len(a.body))) // gin set the error body's
			orig.WriteHeader(200)
			_, _ = orig.Write(a.body)
			return
		}
	}
	orig.WriteHeader(cw.Status())
	_, _ = orig.Write(cw.buf.Bytes())
}
