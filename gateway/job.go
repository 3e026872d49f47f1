package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/gateway/capability"
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

	chain    chainCache
	sessions sessions
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
	info, err := GetOrchestrator(ctx, serviceURI, req)
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
	req, err := orchestratorRequest(signer, nil)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	info, err := GetOrchestrator(ctx, serviceURI, req)
	return info, time.Since(start), err
}

// JobHeaders is Headers without a caller's context (chain reads are bounded
// by ChainTimeout).
func (g *Gateway) JobHeaders(info *lpnet.OrchestratorInfo, id capability.ID, model string, units int64) (http.Header, error) {
	return g.Headers(context.Background(), info, id, model, units)
}

// Headers builds the headers of one AI job worth units: Livepeer-Payment
// (enough tickets to cover units × price, at least one when the price is not
// zero), Livepeer-Segment (credentials with the auth token echoed) and the
// AI protocol marker. Before signing any ticket it runs the sender-side
// checks (price ceiling, ticket and total EV, face value against the
// deposit, params expiry): a refusal pays nothing and uses no nonce.
func (g *Gateway) Headers(ctx context.Context, info *lpnet.OrchestratorInfo, id capability.ID, model string, units int64) (http.Header, error) {
	if _, ok := Model(info, id, model); !ok {
		return nil, fmt.Errorf("%w: %d %s", ErrNotOffered, id, model)
	}
	if exp := info.GetAuthToken().GetExpiration(); exp != 0 && time.Now().Unix() >= exp {
		return nil, ErrTokenExpired
	}
	price := info.GetPriceInfo()
	if err := g.checkPrice(price); err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Authorization", AuthorizationValue)
	var signer *pm.Signer
	if g.Sender != nil {
		signer = g.Sender.Signer()
		if tp := info.GetTicketParams(); tp != nil {
			if err := checkTicketParams(tp); err != nil {
				return nil, err
			}
			ev := pm.EV(bigInt(tp.GetFaceValue()), bigInt(tp.GetWinProb()))
			n := pm.TicketsFor(pm.Fee(price, units), ev)
			if err := g.checkTickets(ctx, tp, ev, n); err != nil {
				return nil, err
			}
			pay, err := g.Sender.Payment(tp, price, n)
			if err != nil {
				return nil, fmt.Errorf("payment: %w", err)
			}
			v, err := pm.EncodeHeader(pay)
			if err != nil {
				return nil, err
			}
			h.Set(PaymentHeader, v)
		}
	}
	sd, err := SegData(signer, id, model, info.GetAuthToken())
	if err != nil {
		return nil, err
	}
	v, err := pm.EncodeHeader(sd)
	if err != nil {
		return nil, err
	}
	h.Set(SegmentHeader, v)
	return h, nil
}

// MaxErrorBody bounds how much of an error response Submit keeps.
const MaxErrorBody = 4 << 10

// Submit POSTs one AI job to {serviceURI}/{slug} with the job headers. The
// caller reads and closes the response body; ctx should carry a deadline.
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
