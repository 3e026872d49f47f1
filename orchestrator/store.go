package orchestrator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"sync"
	"time"
)

// mediaStore holds result media for URL-mode gateways, as go-livepeer's
// in-memory object store does: one folder per request, entries expire.
type mediaStore struct {
	ttl   time.Duration
	mu    sync.Mutex
	items map[string]*requestMedia
}

type requestMedia struct {
	expires time.Time
	files   map[string]storedMedia
}

type storedMedia struct {
	contentType string
	data        []byte
}

func newMediaStore(ttl time.Duration) *mediaStore {
	return &mediaStore{ttl: ttl, items: map[string]*requestMedia{}}
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// put stores one file under the request and returns its name ("0.png").
func (s *mediaStore) put(requestID, contentType, ext string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := s.items[requestID]
	if rm == nil {
		rm = &requestMedia{files: map[string]storedMedia{}}
		s.items[requestID] = rm
	}
	rm.expires = time.Now().Add(s.ttl)
	name := fmt.Sprintf("%d.%s", len(rm.files), ext)
	rm.files[name] = storedMedia{contentType: contentType, data: data}
	return name
}

// Names are only what put makes, so no path can reach outside the store.
var (
	requestIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)
	mediaNamePattern = regexp.MustCompile(`^[0-9]{1,6}\.[a-z0-9]{1,5}$`)
)

func (s *mediaStore) get(requestID, name string) (storedMedia, bool) {
	if !requestIDPattern.MatchString(requestID) || !mediaNamePattern.MatchString(name) {
		return storedMedia{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := s.items[requestID]
	if rm == nil || time.Now().After(rm.expires) {
		return storedMedia{}, false
	}
	m, ok := rm.files[name]
	return m, ok
}

// sweep drops expired requests so memory follows the TTL.
func (s *mediaStore) sweep() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, rm := range s.items {
		if now.After(rm.expires) {
			delete(s.items, id)
		}
	}
}
