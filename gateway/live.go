package gateway

// The gateway side of go-livepeer's live-video-to-video pipeline: the start
// request, the URLs it answers with, and the live payments (an initial 60 s
// inside the start request, then POST /payment every ~5 s). Facts from
// go-livepeer at 176aa415c (conformance/testdata/go-livepeer-live/README.md);
// the trickle streams themselves are gateway/trickle's.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

const (
	// LiveSlug is the start request's path under the transcoder URI
	// (server/ai_http.go:91).
	LiveSlug = "live-video-to-video"
	// LiveDefaultModel is the live pipeline a go-livepeer gateway asks for
	// when it names none (server/ai_process.go:40).
	LiveDefaultModel = "noop"
	// LiveStartTimeout bounds the whole start request, as go-livepeer's
	// gateway bounds it (server/ai_process.go:1103-1106).
	LiveStartTimeout = 5 * time.Second
	// LivePixelsPerSecond is what live is billed on: a notional 1280×720 at
	// 30 fps, whatever the stream really is
	// (server/live_payment_processor.go:12-16,34-37).
	LivePixelsPerSecond int64 = 1280 * 720 * 30
	// LiveInitialPixels is the initial payment inside the start request: 60
	// s of LivePixelsPerSecond (initPixelsToPay, server/ai_process.go:1046).
	LiveInitialPixels = 60 * LivePixelsPerSecond
	// LivePaymentInterval is go-livepeer's default -livePaymentInterval
	// (cmd/livepeer/starter/starter.go:260).
	LivePaymentInterval = 5 * time.Second
	// LivePaymentTimeout bounds one POST /payment
	// (paymentRequestTimeout, server/live_payment.go:26).
	LivePaymentTimeout = time.Minute
	// MaxLiveStartBody bounds the start answer we read (a JSON object of
	// five URLs; an error text).
	MaxLiveStartBody = 64 << 10
)

// LiveStart is the start request's body: go-livepeer's
// LiveVideoToVideoParams as its gateway fills it (server/ai_mediaserver.go:
// 682-687; ai/worker/runner.gen.go:315-343). Params nil is sent as
// "params":null, as a gateway without params sends it.
type LiveStart struct {
	ModelID          string
	Params           map[string]any
	GatewayRequestID string
	StreamID         string
}

// liveStartBody is LiveVideoToVideoParams with the fields in the generated
// type's order (encoding/json writes struct order; map keys sorted): the
// URLs the gateway leaves empty, control_url, events_url and manifest_id
// omitted (they are only used on the O → runner hop).
type liveStartBody struct {
	ControlURL       *string         `json:"control_url,omitempty"`
	EventsURL        *string         `json:"events_url,omitempty"`
	GatewayRequestID *string         `json:"gateway_request_id,omitempty"`
	ManifestID       *string         `json:"manifest_id,omitempty"`
	ModelID          *string         `json:"model_id,omitempty"`
	Params           *map[string]any `json:"params,omitempty"`
	PublishURL       string          `json:"publish_url"`
	StreamID         *string         `json:"stream_id,omitempty"`
	SubscribeURL     string          `json:"subscribe_url"`
}

// Body is the JSON go-livepeer's gateway sends (byte-identical to
// conformance http/start_request_body*.json).
func (s LiveStart) Body() ([]byte, error) {
	if s.ModelID == "" {
		// O dereferences model_id without a nil check (server/ai_http.go:1024).
		return nil, errors.New("live start: model_id is required")
	}
	b := liveStartBody{GatewayRequestID: &s.GatewayRequestID, ModelID: &s.ModelID, Params: &s.Params, StreamID: &s.StreamID}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("live start body: %w", err)
	}
	return out, nil
}

// LiveURLs is the orchestrator's answer to a start request, from the
// gateway's side: it publishes video to Publish and reads the transformed
// video from Subscribe, writes control messages to Control and reads events
// from Events; ManifestID is O's mid, which names the channels and keys the
// live balance.
type LiveURLs struct {
	Publish, Subscribe, Control, Events string
	ManifestID                          string
}

// LiveStartError is an answer to the start request that is not a JSON 200:
// go-livepeer's gateway takes the body minus its trailing newline as the
// error text (server/ai_process.go:1111-1114).
type LiveStartError struct {
	Status  int
	Message string
}

func (e *LiveStartError) Error() string {
	return fmt.Sprintf("live start answered %d: %s", e.Status, e.Message)
}

// ErrLiveStartAnswer marks a 200 JSON answer a gateway cannot use: not a
// LiveVideoToVideoResponse, control_url missing (server/ai_process.go:
// 1116-1118), or a URL that does not parse (server/ai_mediaserver.go:798-814).
var ErrLiveStartAnswer = errors.New("live start answer unusable")

// ErrLiveStartTooLarge is an answer over MaxLiveStartBody (ours: a start
// answer is five URLs); it is also an ErrLiveStartAnswer.
var ErrLiveStartTooLarge = fmt.Errorf("%w: answer over %d bytes", ErrLiveStartAnswer, MaxLiveStartBody)

// LiveStartURL is where the start request goes: the generated client
// resolves "./live-video-to-video" against the transcoder URI
// (ai/worker/runner.gen.go:1126-1156), so a transcoder URI with a path and
// no trailing slash loses its last segment, as it does for go-livepeer.
func LiveStartURL(transcoder string) (string, error) {
	u, err := url.Parse(transcoder)
	if err != nil {
		return "", fmt.Errorf("transcoder URI %q: %w", transcoder, err)
	}
	return u.ResolveReference(&url.URL{Path: "./" + LiveSlug}).String(), nil
}

// StartLive sends the start request to the transcoder URI with the payment
// headers h (LivePayer.StartHeaders) and returns the session's URLs,
// relative ones resolved against the transcoder URI as go-livepeer's
// AppendHostname does (common/util.go:503-525). The request is bounded by
// LiveStartTimeout and ctx. A non-200 (or non-JSON) answer is a
// *LiveStartError.
func StartLive(ctx context.Context, client *http.Client, transcoder string, h http.Header, start LiveStart) (LiveURLs, error) {
	body, err := start.Body()
	if err != nil {
		return LiveURLs{}, err
	}
	target, err := LiveStartURL(transcoder)
	if err != nil {
		return LiveURLs{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, LiveStartTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return LiveURLs{}, fmt.Errorf("build live start request: %w", err)
	}
	for k, vs := range h {
		req.Header[k] = append([]string(nil), vs...)
	}
	// server/ai_process.go:1673-1677 and the generated client's Content-Type.
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", AuthorizationValue)
	resp, err := client.Do(req)
	if err != nil {
		return LiveURLs{}, fmt.Errorf("live start: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxLiveStartBody+1))
	if err != nil {
		return LiveURLs{}, fmt.Errorf("live start: read answer: %w", err)
	}
	if len(b) > MaxLiveStartBody {
		return LiveURLs{}, ErrLiveStartTooLarge
	}
	// The generated client fills JSON200 only for a 200 whose Content-Type
	// contains "json" (ai/worker/runner.gen.go:2279-2297).
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return LiveURLs{}, &LiveStartError{Status: resp.StatusCode, Message: strings.TrimSuffix(string(b), "\n")}
	}
	var ans struct {
		ControlURL   *string `json:"control_url"`
		EventsURL    *string `json:"events_url"`
		ManifestID   *string `json:"manifest_id"`
		PublishURL   string  `json:"publish_url"`
		SubscribeURL string  `json:"subscribe_url"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return LiveURLs{}, fmt.Errorf("%w: %v", ErrLiveStartAnswer, err)
	}
	if ans.ControlURL == nil {
		return LiveURLs{}, fmt.Errorf("%w: control URL is missing", ErrLiveStartAnswer)
	}
	if ans.EventsURL == nil {
		// go-livepeer's gateway dereferences it (server/ai_mediaserver.go:811).
		return LiveURLs{}, fmt.Errorf("%w: events URL is missing", ErrLiveStartAnswer)
	}
	var out LiveURLs
	for _, f := range []struct {
		name string
		raw  string
		dst  *string
	}{{"publish", ans.PublishURL, &out.Publish}, {"subscribe", ans.SubscribeURL, &out.Subscribe},
		{"control", *ans.ControlURL, &out.Control}, {"events", *ans.EventsURL, &out.Events}} {
		u, err := AppendHostname(f.raw, transcoder)
		if err != nil {
			return LiveURLs{}, fmt.Errorf("%w: invalid %s URL: %v", ErrLiveStartAnswer, f.name, err)
		}
		*f.dst = u
	}
	if ans.ManifestID != nil {
		out.ManifestID = *ans.ManifestID
	}
	return out, nil
}

// AppendHostname is go-livepeer's common.AppendHostname (common/util.go:
// 503-525): a URL with a host stays as it is; one without is host + "/" +
// path. An empty URL is an error.
func AppendHostname(raw, host string) (string, error) {
	if raw == "" {
		return "", errors.New("invalid url from orch")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Hostname() != "" {
		return u.String(), nil
	}
	if !strings.HasPrefix(raw, "/") {
		raw = "/" + raw
	}
	u, err = url.Parse(host + raw)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// LivePayer pays one live session as go-livepeer's gateway does. Its credit
// is its own, never the batch jobs': before the start request the gateway
// clears its session balance to a fresh key so the initial payment is
// always sent (clearSessionBalance, server/ai_process.go:1075-1078), and
// that payment's credit counts as spent once sent (CreditSpent,
// server/ai_process.go:1666). Each periodic payment then keeps its change
// whatever O answers (ReceivedChange, server/live_payment.go:80-83).
// Safe for concurrent use.
type LivePayer struct {
	g     *Gateway
	model string

	mu     sync.Mutex
	info   *lpnet.OrchestratorInfo
	mid    string
	credit *big.Rat
	billed time.Time // the last billed instant; zero until Started
}

// LivePayer starts the payments of one live session against info (the
// orchestrator's GetOrchestrator answer for capability 35 and model).
func (g *Gateway) LivePayer(info *lpnet.OrchestratorInfo, model string) *LivePayer {
	return &LivePayer{g: g, model: model, info: info, credit: new(big.Rat)}
}

// StartHeaders are the start request's payment headers: Livepeer-Payment
// for LiveInitialPixels (on chain only), Livepeer-Segment with the
// selector's manifest id "35_<model>" (server/ai_session.go:445-470) and
// Authorization; conformance payment/L03_*. Sender-side refusals are the
// errors of Pay.
func (p *LivePayer) StartHeaders(ctx context.Context) (http.Header, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	info := p.info
	if _, ok := Model(info, capability.LiveVideoToVideo, p.model); !ok {
		return nil, 0, fmt.Errorf("%w: %d %s", ErrNotOffered, capability.LiveVideoToVideo, p.model)
	}
	if exp := info.GetAuthToken().GetExpiration(); exp != 0 && p.g.now().Unix() >= exp {
		return nil, 0, ErrTokenExpired
	}
	if err := p.g.checkPrice(info.GetPriceInfo()); err != nil {
		return nil, 0, err
	}
	// A fresh balance: no credit from earlier sessions, and none kept.
	return p.headers(ctx, ManifestID(capability.LiveVideoToVideo, p.model), LiveInitialPixels, new(big.Rat), false)
}

// headers makes Livepeer-Payment (when the gateway pays) and
// Livepeer-Segment for units under manifest id mid; keep says whether the
// change stays as the session's credit.
func (p *LivePayer) headers(ctx context.Context, mid string, units int64, credit *big.Rat, keep bool) (http.Header, int, error) {
	h := http.Header{}
	h.Set("Authorization", AuthorizationValue)
	var (
		signer *pm.Signer
		n      int
	)
	if p.g.Sender != nil {
		signer = p.g.Sender.Signer()
		pay, tickets, change, err := p.g.tickets(ctx, p.info, pm.Fee(p.info.GetPriceInfo(), units), credit)
		if err != nil {
			return nil, 0, err
		}
		v, err := pm.EncodeHeader(pay)
		if err != nil {
			return nil, 0, err
		}
		h.Set(PaymentHeader, v)
		n = tickets
		if keep {
			p.credit = change
		}
	}
	sd, err := SegData(signer, capability.LiveVideoToVideo, p.model, p.info.GetAuthToken())
	if err != nil {
		return nil, 0, err
	}
	if mid != string(sd.ManifestId) {
		sd.ManifestId = []byte(mid)
		if signer != nil {
			if sd.Sig, err = signer.SignKeccak(SegDataMessage(sd)); err != nil {
				return nil, 0, fmt.Errorf("sign segment credentials: %w", err)
			}
		}
	}
	v, err := pm.EncodeHeader(sd)
	if err != nil {
		return nil, 0, err
	}
	h.Set(SegmentHeader, v)
	return h, n, nil
}

// Started records O's mid from the start answer and starts the billing
// clock: go-livepeer's payment processor starts counting when it is made,
// after the start answer (server/ai_live_video.go:84-101,
// server/live_payment_processor.go:48).
func (p *LivePayer) Started(mid string, now time.Time) {
	p.mu.Lock()
	p.mid, p.billed = mid, now
	p.mu.Unlock()
}

// Paying reports whether periodic payments are sent at all: not without a
// price (server/ai_live_video.go:86-101) or without a ticket sender (an
// off-chain gateway has nothing to pay with).
func (p *LivePayer) Paying() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.g.Sender != nil && p.info.GetPriceInfo() != nil && p.info.GetPriceInfo().GetPricePerUnit() != 0
}

// Due is the pixels a periodic payment at now would pay, 0 while less than
// LivePaymentInterval has passed since the last billed instant
// (shouldSkip): LivePixelsPerSecond × seconds, truncated
// (server/live_payment_processor.go:70-93, 113-121).
func (p *LivePayer) Due(now time.Time) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.due(now)
}

func (p *LivePayer) due(now time.Time) int64 {
	if p.billed.IsZero() || p.billed.Add(LivePaymentInterval).After(now) {
		return 0
	}
	return int64(float64(LivePixelsPerSecond) * now.Sub(p.billed).Seconds())
}

// PaymentHeaders are one periodic payment's headers for units: tickets for
// the fee beyond the session's credit, and Livepeer-Segment naming O's mid
// (sess.Params.ManifestID = mid, server/live_payment.go:62-105);
// conformance payment/L04_*. The billing clock advances by the billed
// duration only, so truncated pixels are paid later
// (server/live_payment_processor.go:86-92).
func (p *LivePayer) PaymentHeaders(ctx context.Context, units int64) (http.Header, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mid == "" {
		return nil, 0, errors.New("live payment before the start answer named the manifest id")
	}
	h, n, err := p.headers(ctx, p.mid, units, p.credit, true)
	if !p.billed.IsZero() {
		// go-livepeer advances even when the payment fails (:80-92).
		p.billed = p.billed.Add(time.Duration(float64(units) / float64(LivePixelsPerSecond) * float64(time.Second)))
	}
	return h, n, err
}

// liveRefreshTimeout bounds the GetOrchestrator of a refresh
// (refreshTimeout, server/broadcast.go).
const liveRefreshTimeout = 3 * time.Second

// refreshIfNeeded is go-livepeer's refreshSessionIfNeeded before each live
// payment (server/live_payment.go:69; server/broadcast.go:1590-1659): once
// the auth token is in its last 10% (AuthTokenRefresh) or the ticket
// params are within a block of expiry, GetOrchestrator is asked again at
// the transcoder URI for the session's capabilities with
// ignoreCapacityCheck (a stream in progress holds its capacity), and the
// answer replaces the session's info; a new auth-token session id starts
// a new balance (updateSession, :1546-1580).
func (p *LivePayer) refreshIfNeeded(ctx context.Context) error {
	p.mu.Lock()
	info := p.info
	p.mu.Unlock()
	stale := info.GetAuthToken() != nil && p.g.now().After(time.Unix(info.GetAuthToken().GetExpiration(), 0).Add(-AuthTokenRefresh))
	if !stale {
		var err error
		if stale, err = p.g.expiring(ctx, info); err != nil {
			return err
		}
	}
	if !stale {
		return nil
	}
	var signer *pm.Signer
	if p.g.Sender != nil {
		signer = p.g.Sender.Signer()
	}
	req, err := OrchestratorRequest(signer, capability.LiveVideoToVideo, p.model)
	if err != nil {
		return err
	}
	req.IgnoreCapacityCheck = true
	rctx, cancel := context.WithTimeout(ctx, liveRefreshTimeout)
	defer cancel()
	fresh, err := getOrchestrator(rctx, p.g.Dial, info.GetTranscoder(), req)
	if err != nil {
		return fmt.Errorf("refresh the live session before paying: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.info.GetAuthToken().GetSessionId() != fresh.GetAuthToken().GetSessionId() {
		p.credit = new(big.Rat)
	}
	p.info = fresh
	return nil
}

// LivePaymentError is a periodic payment O did not accept.
type LivePaymentError struct {
	Status  int
	Message string
}

func (e *LivePaymentError) Error() string {
	return fmt.Sprintf("live payment answered %d: %s", e.Status, e.Message)
}

// Pay sends one periodic payment for units: POST <transcoder>/payment with
// the headers and no body (server/live_payment.go:96-110), bounded by
// LivePaymentTimeout. On 200 the body is a net.PaymentResult whose info
// (fresh ticket params, our auth token) replaces the session's
// (server/live_payment.go:127-142). It returns the tickets sent.
func (p *LivePayer) Pay(ctx context.Context, client *http.Client, units int64) (int, error) {
	if err := p.refreshIfNeeded(ctx); err != nil {
		return 0, err
	}
	h, n, err := p.PaymentHeaders(ctx, units)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	transcoder := p.info.GetTranscoder()
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, LivePaymentTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, transcoder+"/payment", nil)
	if err != nil {
		return n, fmt.Errorf("build live payment request: %w", err)
	}
	for k, vs := range h {
		if k == "Authorization" {
			continue // server/live_payment.go sets only the two payment headers
		}
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return n, fmt.Errorf("live payment: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, pm.MaxHeaderBytes))
	if resp.StatusCode != http.StatusOK {
		return n, &LivePaymentError{Status: resp.StatusCode, Message: strings.TrimSuffix(string(b), "\n")}
	}
	if err != nil {
		return n, fmt.Errorf("live payment: read answer: %w", err)
	}
	fresh, err := DecodePaymentResult(b)
	if err != nil {
		return n, fmt.Errorf("live payment: %w", err)
	}
	if fresh != nil {
		// updateSession replaces the session's info wholesale: fresh ticket
		// params, our auth token (server/broadcast.go:1546-1580).
		p.mu.Lock()
		p.info = fresh
		p.mu.Unlock()
	}
	return n, nil
}

// Credit is the live session's credit with O (the change of its periodic
// payments).
func (p *LivePayer) Credit() *big.Rat {
	p.mu.Lock()
	defer p.mu.Unlock()
	return new(big.Rat).Set(p.credit)
}

// paymentResultInfo is net.PaymentResult's one field, info
// (net/lp_rpc.proto:365-368).
const paymentResultInfo protowire.Number = 16

// DecodePaymentResult reads a /payment answer, go-livepeer's
// net.PaymentResult{info}, and returns its OrchestratorInfo (nil when the
// field is absent). Unknown fields are skipped, as protobuf decoders do.
func DecodePaymentResult(b []byte) (*lpnet.OrchestratorInfo, error) {
	var info *lpnet.OrchestratorInfo
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("answer is not a PaymentResult: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == paymentResultInfo && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("answer is not a PaymentResult: %w", protowire.ParseError(n))
			}
			if info == nil {
				info = &lpnet.OrchestratorInfo{}
			}
			// Repeated occurrences of a message field merge.
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, info); err != nil {
				return nil, fmt.Errorf("PaymentResult.info: %w", err)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, fmt.Errorf("answer is not a PaymentResult: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return info, nil
}
