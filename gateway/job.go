package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Errors a caller branches on when preparing a job.
var (
	// ErrNotOffered: the orchestrator does not advertise the capability/model.
	ErrNotOffered = errors.New("orchestrator does not offer the capability/model")
	// ErrPriceTooHigh: the orchestrator's price is above the gateway's ceiling
	// (the gateway's choice, not the orchestrator's fault).
	ErrPriceTooHigh = errors.New("orchestrator price above the gateway's ceiling")
	// ErrTokenExpired: the auth token from GetOrchestrator is (nearly) expired.
	ErrTokenExpired = errors.New("auth token expired; call GetOrchestrator again")
)

// Gateway holds what a gateway pays and signs with. A nil Sender is the
// off-chain mode: unsigned discovery, no Livepeer-Payment header. Zero
// limits are no limits (the library's callers choose); go-livepeer's
// defaults are DefaultMaxTicketEV, DefaultMaxTotalEV and
// DefaultDepositMultiplier.
type Gateway struct {
	Sender *pm.Sender
	// MaxPricePerUnit caps pricePerUnit/pixelsPerUnit (wei per unit); nil
	// or zero means no ceiling.
	MaxPricePerUnit *big.Rat
	// MaxTicketEV caps one ticket's expected value and MaxTotalEV the
	// expected value of all the tickets of one job (wei).
	MaxTicketEV, MaxTotalEV *big.Rat
	// DepositMultiplier: a ticket's face value may be at most the sender's
	// TicketBroker deposit divided by it. Checked only with a Chain.
	DepositMultiplier int
	// Chain, when set, is read for the block clock (params expiry) and the
	// sender's deposit and reserve; nil skips those checks.
	Chain Chain
	// BlockCacheTTL and SenderCacheTTL bound how stale the chain reads may
	// be; zero means DefaultBlockCacheTTL and DefaultSenderCacheTTL.
	BlockCacheTTL, SenderCacheTTL time.Duration
	// ReuseSessions makes Session reuse OrchestratorInfo until its token or
	// ticket params near expiry (or SessionTTL, zero: DefaultSessionTTL)
	// instead of calling GetOrchestrator every time.
	ReuseSessions bool
	SessionTTL    time.Duration
	// Dial, when set, makes GetOrchestrator's connections (the tester's
	// own network, as its probes use it); nil is gRPC's dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now, when set, is the clock auth tokens expire by (tests replay an
	// OrchestratorInfo at the time it was captured); nil is time.Now.
	// Elapsed times (round trips, cache ages) always use the monotonic
	// clock.
	Now func() time.Time

	chain    chainCache
	sessions sessions
	balances balances
}

// Discover calls GetOrchestrator for one (capability, model) and returns the
// info and the call's round trip.
func (g *Gateway) Discover(ctx context.Context, serviceURI string, id capability.ID, model string) (*lpnet.OrchestratorInfo, time.Duration, error) {
	var signer *pm.Signer
	if g.Sender != nil {
		signer = g.Sender.Signer()
	}
	req, err := OrchestratorRequest(signer, id, model)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	info, err := getOrchestrator(ctx, g.Dial, serviceURI, req)
	return info, time.Since(start), err
}

// Info calls GetOrchestrator without capabilities, which asks for the
// orchestrator's full info: its address, every capability and model it
// advertises and their prices (capabilities_prices), no ticket params. It is
// what a tester needs to learn an orchestrator it only knows by URI.
func (g *Gateway) Info(ctx context.Context, serviceURI string) (*lpnet.OrchestratorInfo, time.Duration, error) {
	var signer *pm.Signer
	if g.Sender != nil {
		signer = g.Sender.Signer()
	}
	req, err := InfoRequest(signer)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	info, err := getOrchestrator(ctx, g.Dial, serviceURI, req)
	return info, time.Since(start), err
}

// JobHeaders is Headers without a caller's context (chain reads are bounded
// by ChainTimeout).
func (g *Gateway) JobHeaders(info *lpnet.OrchestratorInfo, id capability.ID, model string, units int64) (http.Header, error) {
	return g.Headers(context.Background(), info, id, model, units)
}

// Headers is Pay's headers, for a caller that does not report the
// orchestrator's answer back: the payment's change is then spent, as
// go-livepeer treats a job that got no answer.
func (g *Gateway) Headers(ctx context.Context, info *lpnet.OrchestratorInfo, id capability.ID, model string, units int64) (http.Header, error) {
	j, err := g.Pay(ctx, info, id, model, units)
	if err != nil {
		return nil, err
	}
	return j.Header, nil
}

// Job is one AI job, paid and ready to send.
type Job struct {
	// Header holds Livepeer-Payment (on chain), Livepeer-Segment and the AI
	// protocol marker.
	Header http.Header
	// URI is where the job goes: the orchestrator's advertised transcoder
	// URI (OrchestratorInfo.transcoder), to which a go-livepeer gateway
	// appends "/text-to-image" etc. (server/ai_process.go:204), not the URI
	// GetOrchestrator was called on.
	URI string
	// Fee is units × price in wei; Tickets the number of tickets sent.
	Fee     *big.Rat
	Tickets int

	accepted func()
	once     sync.Once
}

// Accepted records that the orchestrator answered the job (HTTP 200): the
// credit this payment brought beyond the fee stays with the gateway for the
// next job on the same session, as go-livepeer's completeBalanceUpdate does
// on ReceivedChange (server/segment_rpc.go:791-815). Without it (any other
// answer, or none) the credit is spent. Safe to call more than once.
func (j *Job) Accepted() {
	if j == nil || j.accepted == nil {
		return
	}
	j.once.Do(j.accepted)
}

// Pay builds one AI job worth units as go-livepeer's prepareAIPayment
// (server/ai_process.go:1629-1681) does:
//   - fee = units × price_info (estimateAIFee);
//   - on chain, tickets = ⌈(max(fee, ticket EV) − credit)/ticket EV⌉, none
//     when the ticket EV is 0 (a free model) or the credit left from
//     earlier jobs on this session covers it (newBalanceUpdate,
//     Balance.StageUpdate); the Livepeer-Payment carries sender and
//     expected price always, and tickets only when there are some (vectors
//     04, 04x, 05);
//   - Livepeer-Segment: credentials signed as genSegCreds signs them
//     (vector 06);
//   - Authorization: Livepeer-AI-Worker-1.0.
//
// Before signing it runs go-livepeer's sender-side checks (price ceiling,
// params expiry, ticket and total EV, face value against the deposit): a
// refusal pays nothing, uses no nonce and keeps the credit. An on-chain
// gateway refuses an orchestrator that sends no ticket params
// (pm.ErrNoTicketParams), as go-livepeer's does (server/broadcast.go:896-900).
func (g *Gateway) Pay(ctx context.Context, info *lpnet.OrchestratorInfo, id capability.ID, model string, units int64) (*Job, error) {
	if _, ok := Model(info, id, model); !ok {
		return nil, fmt.Errorf("%w: %d %s", ErrNotOffered, id, model)
	}
	if exp := info.GetAuthToken().GetExpiration(); exp != 0 && g.now().Unix() >= exp {
		return nil, ErrTokenExpired
	}
	price := info.GetPriceInfo()
	if err := g.checkPrice(price); err != nil {
		return nil, err
	}
	j := &Job{Header: http.Header{}, URI: info.GetTranscoder(), Fee: pm.Fee(price, units)}
	j.Header.Set("Authorization", AuthorizationValue)
	var signer *pm.Signer
	if g.Sender != nil {
		signer = g.Sender.Signer()
		pay, err := g.pay(ctx, info, j)
		if err != nil {
			return nil, err
		}
		v, err := pm.EncodeHeader(pay)
		if err != nil {
			return nil, err
		}
		j.Header.Set(PaymentHeader, v)
	}
	sd, err := SegData(signer, id, model, info.GetAuthToken())
	if err != nil {
		return nil, err
	}
	v, err := pm.EncodeHeader(sd)
	if err != nil {
		return nil, err
	}
	j.Header.Set(SegmentHeader, v)
	return j, nil
}

// pay makes the Payment for j against info's ticket params, staging the
// balance update that j.Accepted completes.
func (g *Gateway) pay(ctx context.Context, info *lpnet.OrchestratorInfo, j *Job) (*lpnet.Payment, error) {
	tp := info.GetTicketParams()
	key := balanceKey{common.BytesToAddress(tp.GetRecipient()), info.GetAuthToken().GetSessionId()}
	credit := g.balances.reserve(key)
	pay, n, change, err := g.tickets(ctx, info, j.Fee, credit)
	if err != nil {
		g.balances.credit(key, credit, info.GetAuthToken().GetExpiration(), g.now())
		return nil, err
	}
	j.Tickets = n
	exp := info.GetAuthToken().GetExpiration()
	j.accepted = func() { g.balances.credit(key, change, exp, g.now()) }
	return pay, nil
}

// tickets makes the Payment for fee against info's ticket params given the
// gateway's credit with the orchestrator session, after the sender-side
// checks; change is the credit left once the fee is paid: credit + n × EV −
// fee (go-livepeer's Balance.StageUpdate, core/accounting.go:41-66). A
// refusal uses no nonce.
func (g *Gateway) tickets(ctx context.Context, info *lpnet.OrchestratorInfo, fee, credit *big.Rat) (pay *lpnet.Payment, n int, change *big.Rat, err error) {
	tp := info.GetTicketParams()
	if tp == nil {
		return nil, 0, nil, pm.ErrNoTicketParams
	}
	if err := checkTicketParams(tp); err != nil {
		return nil, 0, nil, err
	}
	if err := g.checkExpiry(ctx, tp); err != nil {
		return nil, 0, nil, err
	}
	ev := pm.EV(bigInt(tp.GetFaceValue()), bigInt(tp.GetWinProb()))
	if ev.Sign() == 0 && info.GetPriceInfo().GetPricePerUnit() > 0 {
		// go-livepeer's orchestrator issues EV-0 params only for price 0
		// (pm/recipient.go:198-203); its gateway would send no tickets and
		// be refused for insufficient balance. We name the fault first.
		return nil, 0, nil, fmt.Errorf("%w: ticket EV 0 (face value %s, win prob %s) with a price of %d wei per %d units", ErrBadTicketParams,
			bigInt(tp.GetFaceValue()), bigInt(tp.GetWinProb()), info.GetPriceInfo().GetPricePerUnit(), info.GetPriceInfo().GetPixelsPerUnit())
	}
	n = pm.TicketCount(fee, credit, ev)
	if err := g.checkTickets(ctx, tp, ev, max(n, 1)); err != nil {
		return nil, 0, nil, err
	}
	pay, err = g.Sender.Payment(tp, info.GetPriceInfo(), n)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("payment: %w", err)
	}
	change = new(big.Rat).Add(credit, new(big.Rat).Mul(ev, big.NewRat(int64(n), 1)))
	change.Sub(change, fee)
	return pay, n, change, nil
}

// balanceKey is go-livepeer's gateway-side Balance key: the orchestrator's
// ticket recipient and the auth token's session id as manifest id
// (server/broadcast.go:903-905).
type balanceKey struct {
	recipient common.Address
	session   string
}

type balanceEntry struct {
	credit  *big.Rat
	expires int64 // the session's auth token expiration (unix s); 0: none
}

// balances is the gateway's credit with each orchestrator session: what it
// paid beyond the fees of the jobs the orchestrator answered. An entry goes
// once its session's auth token has expired (the orchestrator then issues a
// new session id).
type balances struct {
	mu sync.Mutex
	m  map[balanceKey]balanceEntry
}

// reserve zeroes and returns the credit of key (core/accounting.go Reserve).
func (b *balances) reserve(key balanceKey) *big.Rat {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[key]
	if !ok {
		return new(big.Rat)
	}
	delete(b.m, key)
	return e.credit
}

// credit adds amount (which may be negative) to key's credit, dropping the
// balances of sessions whose token expired before now.
func (b *balances) credit(key balanceKey, amount *big.Rat, expires int64, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := at.Unix()
	for k, e := range b.m {
		if e.expires != 0 && e.expires < now {
			delete(b.m, k)
		}
	}
	if b.m == nil {
		b.m = map[balanceKey]balanceEntry{}
	}
	c := new(big.Rat).Set(amount)
	if e, ok := b.m[key]; ok {
		c.Add(c, e.credit)
	}
	b.m[key] = balanceEntry{credit: c, expires: expires}
}

// Credit is the gateway's credit with the orchestrator session that info
// describes (0 when none).
func (g *Gateway) Credit(info *lpnet.OrchestratorInfo) *big.Rat {
	key := balanceKey{common.BytesToAddress(info.GetTicketParams().GetRecipient()), info.GetAuthToken().GetSessionId()}
	g.balances.mu.Lock()
	defer g.balances.mu.Unlock()
	if e, ok := g.balances.m[key]; ok {
		return new(big.Rat).Set(e.credit)
	}
	return new(big.Rat)
}

// MaxErrorBody bounds how much of an error response Submit keeps.
const MaxErrorBody = 4 << 10

// Submit POSTs one AI job to {uri}/{slug} with the job headers; uri should
// be Job.URI, the orchestrator's advertised transcoder URI. The caller reads
// and closes the response body; ctx should carry a deadline.
func Submit(ctx context.Context, client *http.Client, serviceURI, slug, contentType string, body []byte, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(serviceURI, "/")+"/"+slug, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build job request: %w", err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("submit %s: %w", slug, err)
	}
	return resp, nil
}
