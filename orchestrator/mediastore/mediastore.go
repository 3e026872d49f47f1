// Package mediastore holds an orchestrator's result media for URL-mode
// gateways: one folder per request, entries expire, the total is bounded.
package mediastore

import (
	"container/list"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Store holds result media for URL-mode gateways, as go-livepeer's
// in-memory object store does: one folder per request, entries expire. Unlike
// go-livepeer's, the total is bounded: past maxBytes the oldest requests'
// media are evicted, so a burst of large results cannot exhaust memory
// within one TTL.
type Store struct {
	ttl      time.Duration
	maxBytes int64
	mu       sync.Mutex
	items    map[string]*list.Element // of *requestMedia, oldest at the front
	order    *list.List
	bytes    int64
	// OnChange reports the bytes held and the requests evicted (metrics).
	OnChange func(bytes int64, evicted int)
}

type requestMedia struct {
	id      string
	expires time.Time
	bytes   int64
	files   map[string]Media
}

type Media struct {
	ContentType string
	Data        []byte
}

func New(ttl time.Duration, maxBytes int64) *Store {
	return &Store{ttl: ttl, maxBytes: maxBytes, items: map[string]*list.Element{}, order: list.New(), OnChange: func(int64, int) {}}
}

func NewRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ErrTooLarge is a result larger than the whole store.
var ErrTooLarge = errors.New("result media exceed the orchestrator's -max-result-bytes")

// Put stores one file under the request and returns its name ("0.png"),
// evicting other requests' media, oldest first, to make room.
func (s *Store) Put(requestID, contentType, ext string, data []byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(len(data))
	el := s.items[requestID]
	evicted := 0
	for s.bytes+n > s.maxBytes {
		old := s.order.Front()
		if old != nil && old == el { // never this request's own media
			old = old.Next()
		}
		if old == nil {
			s.OnChange(s.bytes, evicted)
			return "", fmt.Errorf("%w (%d bytes)", ErrTooLarge, s.maxBytes)
		}
		s.remove(old)
		evicted++
	}
	if el == nil {
		el = s.order.PushBack(&requestMedia{id: requestID, files: map[string]Media{}})
		s.items[requestID] = el
	}
	rm := el.Value.(*requestMedia)
	rm.expires = time.Now().Add(s.ttl)
	name := strconv.Itoa(len(rm.files)) + "." + ext
	rm.files[name] = Media{ContentType: contentType, Data: data}
	rm.bytes += n
	s.bytes += n
	s.OnChange(s.bytes, evicted)
	return name, nil
}

func (s *Store) remove(el *list.Element) {
	rm := el.Value.(*requestMedia)
	s.order.Remove(el)
	delete(s.items, rm.id)
	s.bytes -= rm.bytes
}

// Names are only what Put makes, so no path can reach outside the store.
var (
	requestIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)
	mediaNamePattern = regexp.MustCompile(`^[0-9]{1,6}\.[a-z0-9]{1,5}$`)
)

func (s *Store) Get(requestID, name string) (Media, bool) {
	if !requestIDPattern.MatchString(requestID) || !mediaNamePattern.MatchString(name) {
		return Media{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el := s.items[requestID]
	if el == nil {
		return Media{}, false
	}
	rm := el.Value.(*requestMedia)
	if time.Now().After(rm.expires) {
		return Media{}, false
	}
	m, ok := rm.files[name]
	return m, ok
}

// Sweep drops expired requests so memory follows the TTL.
func (s *Store) Sweep() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, el := range s.items {
		if now.After(el.Value.(*requestMedia).expires) {
			s.remove(el)
		}
	}
	s.OnChange(s.bytes, 0)
}
