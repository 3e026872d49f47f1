package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// DefaultSessionTTL bounds how long reused orchestrator info is kept even
// when its token and params are still valid: go-livepeer's AI session
// manager refreshes its pools every 10 minutes (AISessionManagerTTL).
const DefaultSessionTTL = 10 * time.Minute

// Session is orchestrator info ready to pay against.
type Session struct {
	Info *lpnet.OrchestratorInfo
	// RTT is the GetOrchestrator round trips this call made (more than one
	// when fresh params were already expiring); 0 when Reused.
	RTT time.Duration
	// Reused: the info came from the cache, no GetOrchestrator was made.
	Reused bool
}

type sessionKey struct {
	uri   string
	id    capability.ID
	model string
}

type cachedSession struct {
	info    *lpnet.OrchestratorInfo
	fetched time.Time
}

// sessions caches OrchestratorInfo per (serviceURI, capability, model).
type sessions struct {
	mu sync.Mutex
	m  map[sessionKey]cachedSession
}

// Session returns the orchestrator's info for one (capability, model). By
// default it calls GetOrchestrator every time (a tester times discovery per
// probe). With ReuseSessions it reuses the last answer until, as in
// go-livepeer's shouldRefreshSession, the auth token is within
// AuthTokenRefresh of expiry or the ticket params come within a block of
// expiry (or SessionTTL passes). Fresh params already expiring are fetched
// once more; if they expire again, that is ErrParamsExpired (the
// orchestrator's clock).
func (g *Gateway) Session(ctx context.Context, serviceURI string, id capability.ID, model string) (Session, error) {
	key := sessionKey{serviceURI, id, model}
	if g.ReuseSessions {
		if c, ok := g.cached(key); ok {
			stale, err := g.stale(ctx, c)
			if err != nil {
				return Session{}, err
			}
			if !stale {
				return Session{Info: c.info, Reused: true}, nil
			}
			g.Forget(serviceURI, id, model)
		}
	}
	var s Session
	for attempt := 0; ; attempt++ {
		info, rtt, err := g.Discover(ctx, serviceURI, id, model)
		s.RTT += rtt
		if err != nil {
			return s, err
		}
		s.Info = info
		expiring, err := g.expiring(ctx, info)
		if err != nil {
			return s, err
		}
		if !expiring {
			break
		}
		if attempt == 1 {
			return s, fmt.Errorf("%w: fresh from GetOrchestrator twice (expiration block %s)", ErrParamsExpired,
				bigInt(info.GetTicketParams().GetExpirationBlock()))
		}
	}
	if g.ReuseSessions {
		g.sessions.mu.Lock()
		if g.sessions.m == nil {
			g.sessions.m = map[sessionKey]cachedSession{}
		}
		g.sessions.m[key] = cachedSession{info: s.Info, fetched: time.Now()}
		g.sessions.mu.Unlock()
	}
	return s, nil
}

// Forget drops the cached info for (serviceURI, capability, model), e.g.
// after the orchestrator refused what was made from it.
func (g *Gateway) Forget(serviceURI string, id capability.ID, model string) {
	g.sessions.mu.Lock()
	delete(g.sessions.m, sessionKey{serviceURI, id, model})
	g.sessions.mu.Unlock()
}

func (g *Gateway) cached(key sessionKey) (cachedSession, bool) {
	g.sessions.mu.Lock()
	defer g.sessions.mu.Unlock()
	c, ok := g.sessions.m[key]
	return c, ok
}

// AuthTokenRefresh is how long before its auth token expires a session is
// refreshed: go-livepeer's shouldRefreshSession refreshes once now is past
// expiration − 10% of authTokenValidPeriod (30 min), i.e. 180 s
// (server/broadcast.go:1637-1644, server/rpc.go:47).
const AuthTokenRefresh = 180 * time.Second

// now is the time auth tokens are checked against: Now when set.
func (g *Gateway) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// stale is go-livepeer's shouldRefreshSession: no auth token, now after the
// token's expiration − AuthTokenRefresh, or the ticket params within a block
// of expiry (expirationBlock − lastSeenL1Block ≤ 1); or, ours, SessionTTL
// passed since the info was fetched.
func (g *Gateway) stale(ctx context.Context, c cachedSession) (bool, error) {
	ttl := g.SessionTTL
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	if time.Since(c.fetched) >= ttl {
		return true, nil
	}
	tok := c.info.GetAuthToken()
	if tok == nil {
		return true, nil
	}
	if g.now().After(time.Unix(tok.GetExpiration(), 0).Add(-AuthTokenRefresh)) {
		return true, nil
	}
	return g.expiring(ctx, c.info)
}

// expiring reports whether info's ticket params (when it has any and the
// gateway pays on chain) come within a block of expiry.
func (g *Gateway) expiring(ctx context.Context, info *lpnet.OrchestratorInfo) (bool, error) {
	tp := info.GetTicketParams()
	if g.Sender == nil || g.Chain == nil || tp == nil {
		return false, nil
	}
	last, err := g.lastBlock(ctx)
	if err != nil {
		return false, err
	}
	return paramsExpiring(tp, last), nil
}
