// Package shard lets several tester instances of one region share its
// probes through ZooKeeper (issue 17, item 1).
//
// Membership: each instance holds an ephemeral znode
// /lpgauge/testers/<region>/<id>; it disappears when the instance's session
// ends (a clean stop at once, a crash or a partition after the session
// timeout).
//
// Assignment: at a round's slot every instance reads the live members and
// gives each orchestrator to the member with the highest rendezvous score
// (hash of member and orchestrator), so all of one orchestrator's models stay
// on one instance, which keeps the tester's one-probe-in-flight-per-
// orchestrator rule across instances, and a member that comes or goes moves
// only its own share.
//
// Exactly once: the assignment only orders the work. Before a probe starts,
// its instance creates the claim znode
// /lpgauge/claims/<region>/<slot>/<orchestrator>~<pipeline>~<model>
// (create-if-absent, persistent); only the instance whose create succeeded
// runs the probe, and it writes its one row. ZooKeeper's creates are
// linearizable, so two instances can never both hold a claim, whatever the
// network does: a partitioned instance cannot create, so it runs nothing new
// (probes it claimed before the cut finish and are written). An instance's
// own share is claimed at once; after the sweep delay every instance also
// tries the rest of the plan, so the share of an instance that died or is cut
// off is run in the same round by whoever claims it first. Probes the round
// deadline keeps from starting are claimed the same way and end as one
// excused tester/round_deadline row. See tester/README.md, "Several testers
// per region", for the guarantee and its bounds.
package shard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/lpgauge/lpgauge/tester"
)

// Root is the znode under which every lpgauge tester coordinates.
const Root = "/lpgauge"

// Config configures Open.
type Config struct {
	Servers []string // ZooKeeper host:port list
	Region  string
	ID      string // this instance's name; default hostname-pid
	// SessionTimeout is how long ZooKeeper keeps a silent instance a member
	// (default 6 s). Keep it below the round period so a dead instance's
	// share moves to the others' own shares by the next round.
	SessionTimeout time.Duration
	// Sweep is how long after a slot's first claim this instance starts
	// claiming other members' probes that nobody claimed yet (the share of a
	// dead or cut-off member). Set it well inside the round deadline.
	Sweep time.Duration
	// OpTimeout bounds one ZooKeeper call (default 2 s).
	OpTimeout time.Duration
	// Retain is how long a slot's claims stay before the next slots remove
	// them (default one hour; far longer than any round).
	Retain time.Duration
	Log    *slog.Logger
}

// DefaultID names an instance by host and process.
func DefaultID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "tester"
	}
	return h + "-" + strconv.Itoa(os.Getpid())
}

// Shard is one instance's membership and claims.
type Shard struct {
	cfg  Config
	conn *zk.Conn
	me   string // member znode path

	ready     atomic.Bool // conn is set: session events may use it
	stop      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	slots   map[int64]*slotView
	pending map[string]pendingClaim // claim node → probe, outcome unknown
	orphan  func(slot time.Time, p tester.Planned)
	// Counters for tests and logs.
	claimed, lost, unreachable int
}

type slotView struct {
	first   time.Time
	members []string
	warned  bool // a failed claim of the slot was logged
}

// Open connects to ZooKeeper, waits for a session and joins the region.
func Open(ctx context.Context, cfg Config) (*Shard, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("shard: no ZooKeeper servers")
	}
	if cfg.Region == "" {
		return nil, errors.New("shard: no region")
	}
	if cfg.ID == "" {
		cfg.ID = DefaultID()
	}
	if strings.ContainsAny(cfg.ID, "/") {
		return nil, fmt.Errorf("shard: id %q may not contain '/'", cfg.ID)
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 6 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	if cfg.Retain <= 0 {
		cfg.Retain = time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Shard{cfg: cfg, slots: map[int64]*slotView{}, pending: map[string]pendingClaim{}, stop: make(chan struct{})}
	s.me = path.Join(s.membersDir(), cfg.ID)
	conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithLogger(zkLog{cfg.Log}), zk.WithLogInfo(false),
		zk.WithEventCallback(func(ev zk.Event) {
			// A new session (after an expiry: a partition longer than the
			// timeout) has lost the member node; join again.
			if ev.Type == zk.EventSession && ev.State == zk.StateHasSession && s.ready.Load() {
				go func() { _ = s.join() }()
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("shard: connect to ZooKeeper %v: %w", cfg.Servers, err)
	}
	s.conn = conn
	for conn.State() != zk.StateHasSession {
		select {
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("shard: no ZooKeeper session with %v: %w", cfg.Servers, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.ready.Store(true)
	if err := s.join(); err != nil {
		conn.Close()
		return nil, err
	}
	go s.resolveLoop()
	cfg.Log.Info("joined the region's testers", "shard_id", cfg.ID, "zookeeper", strings.Join(cfg.Servers, ","))
	return s, nil
}

// Close leaves the region at once (the session and its member node end).
// Claims still unresolved are logged: their rows may be missing.
func (s *Shard) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.resolve()
		s.mu.Lock()
		for node := range s.pending {
			s.cfg.Log.Warn("claim still unconfirmed at exit: its probe may have no row", "claim", node)
		}
		s.mu.Unlock()
		s.conn.Close()
	})
}

// OnOrphan sets what to do with a probe this instance turned out to have
// claimed after giving up on it (the create reached ZooKeeper as the
// connection dropped): write its one excused row. Set before the first round.
func (s *Shard) OnOrphan(f func(slot time.Time, p tester.Planned)) {
	s.mu.Lock()
	s.orphan = f
	s.mu.Unlock()
}

// pendingClaim is a create whose outcome this instance does not know: sent,
// then the connection dropped or the call timed out.
type pendingClaim struct {
	slot time.Time
	p    tester.Planned
}

// resolveLoop settles unknown claims whenever there is a session: the
// node's data names its holder. Reads on a session follow its earlier
// writes, so a missing node means the create never happened.
func (s *Shard) resolveLoop() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.resolve()
		}
	}
}

func (s *Shard) resolve() {
	s.mu.Lock()
	nodes := make(map[string]pendingClaim, len(s.pending))
	for n, pc := range s.pending {
		nodes[n] = pc
	}
	orphan := s.orphan
	s.mu.Unlock()
	for node, pc := range nodes {
		var data []byte
		err := s.do(func() error {
			var err error
			data, _, err = s.conn.Get(node)
			return err
		})
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			continue // no session yet: try again later
		}
		// Close resolves while resolveLoop may be resolving the same
		// snapshot: only the call that removes the claim records it, or
		// its probe gets two excused rows (seen at exit under load).
		s.mu.Lock()
		_, mine := s.pending[node]
		delete(s.pending, node)
		s.mu.Unlock()
		if !mine {
			continue
		}
		if err == nil && string(data) == s.cfg.ID {
			s.cfg.Log.Warn("a claim made as ZooKeeper dropped was ours: its probe is recorded excused", "claim", node)
			if orphan != nil {
				orphan(pc.slot, pc.p)
			}
		}
	}
}

// ID is this instance's member name.
func (s *Shard) ID() string { return s.cfg.ID }

// Counts returns how many claims this instance won, found taken, and could
// not make (ZooKeeper unreachable).
func (s *Shard) Counts() (claimed, taken, unreachable int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimed, s.lost, s.unreachable
}

func (s *Shard) membersDir() string { return path.Join(Root, "testers", s.cfg.Region) }
func (s *Shard) claimsDir() string  { return path.Join(Root, "claims", s.cfg.Region) }

// join creates this instance's member node, replacing one a previous
// session of the same id left behind.
func (s *Shard) join() error {
	if err := s.ensure(s.membersDir()); err != nil {
		return err
	}
	err := s.do(func() error {
		_, err := s.conn.Create(s.me, []byte(s.cfg.ID), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		if errors.Is(err, zk.ErrNodeExists) {
			_, st, gerr := s.conn.Get(s.me)
			if gerr == nil && st.EphemeralOwner == s.conn.SessionID() {
				return nil
			}
			// An earlier session's node (a restart within the timeout): take it over.
			_ = s.conn.Delete(s.me, -1)
			_, err = s.conn.Create(s.me, []byte(s.cfg.ID), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("shard: join %s: %w", s.me, err)
	}
	return nil
}

// ensure creates a persistent path and its parents.
func (s *Shard) ensure(p string) error {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := ""
	for _, part := range parts {
		cur += "/" + part
		err := s.do(func() error {
			_, err := s.conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll))
			if errors.Is(err, zk.ErrNodeExists) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("shard: create %s: %w", cur, err)
		}
	}
	return nil
}

var errNoSession = errors.New("no ZooKeeper session (partitioned or reconnecting)")

// do runs one ZooKeeper call within OpTimeout. Without a session nothing is
// sent: the client would queue the request and send it after reconnecting,
// and a claim made then, after this instance gave up on it, would be one
// nobody runs. A call that was sent and timed out may still happen; claims
// that did are settled by resolve.
func (s *Shard) do(f func() error) error {
	if st := s.conn.State(); st != zk.StateHasSession {
		return fmt.Errorf("%w: state %s", errNoSession, st)
	}
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	t := time.NewTimer(s.cfg.OpTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		return fmt.Errorf("ZooKeeper call timed out after %s", s.cfg.OpTimeout)
	}
}

// Owner is the member that rendezvous hashing gives key to ("" if none).
func Owner(members []string, key string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		h := sha256.Sum256([]byte(m + "\x00" + key))
		if sc := binary.BigEndian.Uint64(h[:8]); best == "" || sc > bestScore || sc == bestScore && m < best {
			best, bestScore = m, sc
		}
	}
	return best
}

// view returns the slot's membership, read once at the slot's first claim.
func (s *Shard) view(slot time.Time) *slotView {
	k := slot.Unix()
	s.mu.Lock()
	v, ok := s.slots[k]
	if !ok {
		v = &slotView{first: time.Now()}
		s.slots[k] = v
		for old := range s.slots {
			if old < k-int64(s.cfg.Retain/time.Second) {
				delete(s.slots, old)
			}
		}
	}
	s.mu.Unlock()
	if ok {
		return v
	}
	var members []string
	err := s.do(func() error {
		var err error
		members, _, err = s.conn.Children(s.membersDir())
		return err
	})
	if err != nil {
		s.cfg.Log.Warn("members not read: this slot's probes wait for the sweep", "slot", slot.UTC().Format(time.RFC3339), "err", err)
	} else if !contains(members, s.cfg.ID) {
		// Our node is gone (an expired session): join again for later slots.
		go func() { _ = s.join() }()
	}
	s.mu.Lock()
	v.members = members
	s.mu.Unlock()
	go s.prune(slot)
	return v
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Mine says whether the slot's assignment gives p to this instance.
func (s *Shard) Mine(slot time.Time, p tester.Planned) bool {
	v := s.view(slot)
	s.mu.Lock()
	defer s.mu.Unlock()
	return Owner(v.members, p.Target.Address) == s.cfg.ID
}

// Claim implements tester.Claimer: this instance's share is claimed at
// once; another member's waits for the sweep and is claimed only if nobody
// has yet. It returns whether this instance runs p.
func (s *Shard) Claim(ctx context.Context, slot time.Time, p tester.Planned) bool {
	if !s.Mine(slot, p) {
		s.mu.Lock()
		wait := time.Until(s.slots[slot.Unix()].first.Add(s.cfg.Sweep))
		s.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
	}
	return s.ClaimNow(ctx, slot, p)
}

// Stopping implements tester.Claimer: a stopping instance claims (and
// excuses) its own share and any probe whose sweep has begun, since the
// others may have swept past it; another member's probe before the sweep
// stays with that member.
func (s *Shard) Stopping(ctx context.Context, slot time.Time, p tester.Planned) bool {
	if !s.Mine(slot, p) {
		s.mu.Lock()
		early := time.Now().Before(s.slots[slot.Unix()].first.Add(s.cfg.Sweep))
		s.mu.Unlock()
		if early {
			return false
		}
	}
	return s.ClaimNow(ctx, slot, p)
}

// ClaimNow implements tester.Claimer: create-if-absent of p's claim in the
// slot, without waiting.
func (s *Shard) ClaimNow(ctx context.Context, slot time.Time, p tester.Planned) bool {
	if ctx.Err() != nil {
		return false
	}
	dir := path.Join(s.claimsDir(), strconv.FormatInt(slot.Unix(), 10))
	node := path.Join(dir, ClaimName(p))
	var err error
	for try := 0; try < 2; try++ {
		err = s.do(func() error {
			_, err := s.conn.Create(node, []byte(s.cfg.ID), 0, zk.WorldACL(zk.PermAll))
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			if err = s.ensure(dir); err == nil {
				continue
			}
		}
		break
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.claimed++
		return true
	case errors.Is(err, zk.ErrNodeExists):
		s.lost++
		return false
	default:
		s.unreachable++
		if !errors.Is(err, errNoSession) {
			// Sent, answer lost: the create may have happened. Settled once
			// a session is back; if it was ours, OnOrphan records it.
			s.pending[node] = pendingClaim{slot: slot, p: p}
		}
		// Once per slot: a partition fails every claim of the slot.
		if v := s.slots[slot.Unix()]; v != nil && !v.warned {
			v.warned = true
			s.cfg.Log.Warn("claims not made: this instance runs no new probe of the slot; the other instances' sweep takes them", "slot", slot.UTC().Format(time.RFC3339), "claim", node, "err", err)
		}
		return false
	}
}

// ClaimName is the znode name of one probe within its slot.
func ClaimName(p tester.Planned) string {
	return p.Target.Address + "~" + p.Model.Pipeline.Info().Slug + "~" + url.PathEscape(p.Model.Model)
}

// prune removes the claims of slots older than Retain (best effort; any
// member may do it, and a race between two only loses an error).
func (s *Shard) prune(slot time.Time) {
	var slots []string
	if err := s.do(func() error {
		var err error
		slots, _, err = s.conn.Children(s.claimsDir())
		return err
	}); err != nil {
		return
	}
	cut := slot.Add(-s.cfg.Retain).Unix()
	for _, name := range slots {
		n, err := strconv.ParseInt(name, 10, 64)
		if err != nil || n >= cut {
			continue
		}
		dir := path.Join(s.claimsDir(), name)
		_ = s.do(func() error {
			kids, _, err := s.conn.Children(dir)
			if err != nil {
				return err
			}
			for _, k := range kids {
				_ = s.conn.Delete(path.Join(dir, k), -1)
			}
			return s.conn.Delete(dir, -1)
		})
	}
}

// zkLog sends the client's own messages (reconnects, expiries) to slog.
type zkLog struct{ l *slog.Logger }

func (z zkLog) Printf(format string, args ...any) {
	z.l.Debug(fmt.Sprintf(format, args...), "component", "zookeeper")
}
