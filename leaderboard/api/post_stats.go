package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

// DefaultMaxPostBytes bounds a post_stats body: one Stats object is a few
// KiB; anything far larger is an error or an attack.
const DefaultMaxPostBytes = 256 << 10

// postedStats is the Stats object AI testers post to leaderboard-serverless.
// errors and response_payload are kept as posted (raw JSON) and come back
// from raw_stats unchanged.
type postedStats struct {
	Region          string          `json:"region"`
	Orchestrator    string          `json:"orchestrator"`
	SuccessRate     *float64        `json:"success_rate"`
	RoundTripTime   float64         `json:"round_trip_time"`
	Errors          json.RawMessage `json:"errors"`
	Timestamp       int64           `json:"timestamp"`
	Model           string          `json:"model"`
	ModelIsWarm     bool            `json:"model_is_warm"`
	Pipeline        string          `json:"pipeline"`
	InputParameters string          `json:"input_parameters"`
	ResponsePayload json.RawMessage `json:"response_payload"`
	// Source (additive) says what the row measures: "" or "tester" a
	// probe, "gateway" a real job of the posting gateway operator (only
	// from a signed key the keys file allows it), the real-traffic evidence
	// of the gaming flags.
	Source string `json:"source"`
}

// PostKey is one tester's signed-mode key: its secret and the regions it
// may post for (empty: every region, the old keys-file form).
type PostKey struct {
	Secret  string
	Regions []string
	// Gateway lets the key post "source": "gateway" rows: a gateway
	// operator's own jobs, compared with the probes by the gaming flags.
	Gateway bool
}

// owns reports whether the key may post results of region.
func (k PostKey) owns(region string) bool {
	if len(k.Regions) == 0 {
		return true
	}
	for _, r := range k.Regions {
		if strings.EqualFold(r, region) {
			return true
		}
	}
	return false
}

// Plausibility bounds a posted Stats object. Zero values take the defaults.
type Plausibility struct {
	// MinRTT and MaxRTT bound round_trip_time (50 ms, 10 min): no AI job
	// finishes faster than the floor over a network, and a longer one is a
	// timeout, not a measurement. The floor applies to successes only (a
	// refused connection fails in no time).
	MinRTT, MaxRTT time.Duration
	// MaxAge is how old a posted timestamp may be (7 days; the leaderboard
	// caps it at its raw retention); MaxFuture how far ahead of the server
	// clock (5 min).
	MaxAge, MaxFuture time.Duration
}

func (p *Plausibility) defaults() {
	if p.MinRTT <= 0 {
		p.MinRTT = 50 * time.Millisecond
	}
	if p.MaxRTT <= 0 {
		p.MaxRTT = 10 * time.Minute
	}
	if p.MaxAge <= 0 {
		p.MaxAge = 7 * 24 * time.Hour
	}
	if p.MaxFuture <= 0 {
		p.MaxFuture = 5 * time.Minute
	}
}

// Bounds of the posted text fields. A model id is a Hugging Face style
// repository id (org/name, optionally :tag or @revision); nothing longer or
// with other characters is a model any orchestrator advertises.
const (
	maxModelLen           = 256
	maxErrors             = 32
	maxErrorCodeLen       = 128
	maxErrorMessageLen    = 4096
	maxResponsePayloadLen = 64 << 10
	maxInputParamsLen     = 16 << 10
)

var modelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$`)

var addressRE = regexp.MustCompile(`^0x[0-9a-f]{40}$`)

// signatureOK checks leaderboard-serverless's scheme: Authorization is the
// hex HMAC-SHA256 of the raw body under the shared secret. Compared in
// constant time (upstream used ==).
func signatureOK(secret string, body []byte, header string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(header))
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

func (s *Server) postStats(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	keyID := strings.TrimSpace(c.GetHeader("X-Lpgauge-Key"))
	if s.cfg.Secret == "" && keyID == "" {
		fail(c, http.StatusForbidden, "post_stats is disabled on this server: it has no SECRET to check signatures with")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxPostBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes: post one Stats object per request", s.cfg.MaxPostBytes))
			return
		}
		fail(c, http.StatusBadRequest, "could not read the request body")
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	var nonce string
	if keyID != "" {
		if nonce = s.signedOK(c, keyID, body); nonce == "" {
			return
		}
	} else if !signatureOK(s.cfg.Secret, body, c.GetHeader("Authorization")) {
		fail(c, http.StatusForbidden, "request can not be authenticated")
		return
	}
	r, extra, err := s.resultFromPost(body, keyID)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if r.Source == store.GatewaySourcePrefix && (keyID == "" || !s.cfg.Keys[keyID].Gateway) {
		// Real-traffic evidence accuses orchestrators of gaming: only an
		// identified gateway operator may post it.
		fail(c, http.StatusForbidden, `"source": "gateway" needs a signed post (X-Lpgauge-Key) with a key the keys file marks "gateway": true; post probes without source`)
		return
	}
	if keyID != "" {
		// A key posts only for the regions it was given: a tester's key
		// cannot score orchestrators from a place it does not test from.
		if k := s.cfg.Keys[keyID]; !k.owns(r.Region) {
			fail(c, http.StatusForbidden, fmt.Sprintf("key %q may not post results for region %s: it posts for %s", keyID, r.Region, strings.Join(k.Regions, ", ")))
			return
		}
		// The nonce is claimed only now: the signature verified, so
		// nobody can burn another tester's nonces.
		fresh, err := s.store.ClaimNonce(ctx, keyID, nonce, s.cfg.Now().Add(-2*s.cfg.MaxSkew))
		if err != nil {
			s.storeFailed(c, "nonce", err)
			return
		}
		if !fresh {
			fail(c, http.StatusForbidden, "replayed request: this nonce was already used")
			return
		}
		if r.Source == store.GatewaySourcePrefix {
			// Checked before the nonce is claimed: a refused post can be
			// sent again, corrected, with the same nonce.
			r.Source = store.GatewaySourcePrefix + keyID
		} else {
			r.Source = "post_stats:" + keyID
		}
		r.TesterID = keyID
	}
	if _, err := s.store.Ingest(ctx, r, extra); err != nil {
		if errors.Is(err, store.ErrContested) {
			c.Header("Retry-After", "30")
			fail(c, http.StatusServiceUnavailable, "another leaderboard replica is storing this same post and has not finished: retry in 30 s")
			return
		}
		s.storeFailed(c, "ingest", err)
		return
	}
	// A re-post of the same body is acknowledged the same way: it is stored once.
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte("ok"))
}

// resultFromPost validates a posted Stats object and maps it onto a probe
// row plus the extras kept beside it. The probe id is the hash of the key id
// and the body: the same post by one key is one row, by two keys two rows.
// Every refusal names the field and what to send.
func (s *Server) resultFromPost(body []byte, keyID string) (results.Result, store.Posted, error) {
	var p postedStats
	var none store.Posted
	if !utf8.Valid(body) {
		return results.Result{}, none, errors.New("body is not valid UTF-8: post the Stats object as UTF-8 JSON")
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return results.Result{}, none, fmt.Errorf("body is not a JSON Stats object: %v", err)
	}
	reg, ok := regions.Lookup(p.Region)
	if !ok || reg.Code == regions.Global || !reg.Has(regions.AI) {
		return results.Result{}, none, fmt.Errorf("invalid region %q: post from one of %s", p.Region, strings.Join(regions.Codes(regions.AI), ", "))
	}
	orch := strings.ToLower(strings.TrimSpace(p.Orchestrator))
	if !addressRE.MatchString(orch) {
		return results.Result{}, none, fmt.Errorf("invalid orchestrator %q: want a 0x-prefixed 40-hex-digit address", p.Orchestrator)
	}
	if p.Pipeline == "" || p.Model == "" {
		return results.Result{}, none, errors.New("pipeline and model are required: this leaderboard stores AI job stats only")
	}
	pl, ok := capability.Lookup(p.Pipeline)
	if !ok {
		return results.Result{}, none, fmt.Errorf("pipeline %q is not a known AI pipeline: use its name or slug (e.g. %q or %q)", clip(p.Pipeline, 64), "Text to image", "text-to-image")
	}
	if len(p.Model) > maxModelLen || !modelRE.MatchString(p.Model) {
		return results.Result{}, none, fmt.Errorf("model %q is not a model id: at most %d characters of letters, digits and . _ - / : @ + (e.g. ByteDance/SDXL-Lightning)", clip(p.Model, 64), maxModelLen)
	}
	if p.SuccessRate == nil || (*p.SuccessRate != 0 && *p.SuccessRate != 1) {
		return results.Result{}, none, errors.New("success_rate is required and must be 0 (failed job) or 1 (succeeded)")
	}
	lim := s.cfg.Plausibility
	rtt := p.RoundTripTime
	if math.IsNaN(rtt) || rtt < 0 || rtt > lim.MaxRTT.Seconds() || (*p.SuccessRate == 1 && rtt < lim.MinRTT.Seconds()) {
		return results.Result{}, none, fmt.Errorf("round_trip_time %v is not plausible: give the job's seconds, between %v and %v for a success", rtt, lim.MinRTT.Seconds(), lim.MaxRTT.Seconds())
	}
	now := s.cfg.Now().UTC()
	at := time.Unix(p.Timestamp, 0).UTC()
	if p.Timestamp <= 0 || at.Before(now.Add(-lim.MaxAge)) || at.After(now.Add(lim.MaxFuture)) {
		return results.Result{}, none, fmt.Errorf("timestamp %d is not a plausible test time: give the job's unix start time in seconds, within the last %s and at most %s ahead of the server clock",
			p.Timestamp, lim.MaxAge, lim.MaxFuture)
	}
	if len(p.InputParameters) > maxInputParamsLen {
		return results.Result{}, none, fmt.Errorf("input_parameters is %d bytes: at most %d", len(p.InputParameters), maxInputParamsLen)
	}
	source := "post_stats"
	switch p.Source {
	case "", "tester":
	case "gateway":
		source = store.GatewaySourcePrefix // the caller appends the key id
	default:
		return results.Result{}, none, fmt.Errorf("source %q is not a source: omit it (or \"tester\") for a probe, \"gateway\" for a gateway operator's own job", clip(p.Source, 64))
	}
	extra, err := postedExtras(p)
	if err != nil {
		return results.Result{}, none, err
	}
	sum := sha256.Sum256(body)
	id := results.ProbeID("post_stats", hex.EncodeToString(sum[:]))
	if keyID != "" {
		id = results.ProbeID("post_stats", keyID, hex.EncodeToString(sum[:]))
	}
	r := results.Result{
		ProbeID:         id,
		Region:          reg.Code,
		Source:          source,
		Orchestrator:    orch,
		Pipeline:        pl.Name,
		Model:           p.Model,
		Warm:            p.ModelIsWarm,
		StartedAt:       at,
		Outcome:         results.Failure,
		Total:           time.Duration(rtt * float64(time.Second)),
		InputParameters: p.InputParameters,
	}
	if *p.SuccessRate == 1 {
		r.Outcome = results.Success
	} else {
		r.ErrorClass = "posted"
		var errs []statError
		_ = json.Unmarshal([]byte(extra.Errors), &errs) // validated by postedExtras
		if len(errs) > 0 {
			r.ErrorCode, r.ErrorMessage = errs[0].ErrorCode, errs[0].Message
		}
	}
	return r, extra, nil
}

// postedExtras validates errors and response_payload and keeps them as
// posted (compacted JSON).
func postedExtras(p postedStats) (store.Posted, error) {
	var out store.Posted
	if len(p.Errors) > 0 && string(p.Errors) != "null" {
		var errs []statError
		if err := json.Unmarshal(p.Errors, &errs); err != nil {
			return out, errors.New("errors must be an array of {error_code, message, count}")
		}
		if len(errs) > maxErrors {
			return out, fmt.Errorf("errors has %d entries: at most %d, one per distinct error", len(errs), maxErrors)
		}
		for i, e := range errs {
			if len(e.ErrorCode) > maxErrorCodeLen || len(e.Message) > maxErrorMessageLen || strings.ContainsRune(e.ErrorCode+e.Message, 0) {
				return out, fmt.Errorf("errors[%d]: error_code at most %d bytes and message at most %d, without NUL", i, maxErrorCodeLen, maxErrorMessageLen)
			}
		}
		var b bytes.Buffer
		if err := json.Compact(&b, p.Errors); err != nil {
			return out, errors.New("errors must be an array of {error_code, message, count}")
		}
		out.Errors = b.String()
	}
	if len(p.ResponsePayload) > 0 && string(p.ResponsePayload) != "null" {
		var b bytes.Buffer
		if err := json.Compact(&b, p.ResponsePayload); err != nil {
			return out, errors.New("response_payload is not JSON")
		}
		if b.Len() > maxResponsePayloadLen {
			return out, fmt.Errorf("response_payload is %d bytes: at most %d", b.Len(), maxResponsePayloadLen)
		}
		out.ResponsePayload = b.String()
	}
	return out, nil
}

// clip cuts s for an error message (valid UTF-8 kept).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return results.Truncate(s, n) + "…"
}

// signedOK checks the per-tester mode: a known key, a timestamp within
// MaxSkew and the HMAC over timestamp, nonce and body. It writes the refusal
// itself and returns the nonce ("" when refused); the caller claims it.
func (s *Server) signedOK(c *gin.Context, keyID string, body []byte) string {
	key, ok := s.cfg.Keys[keyID]
	if !ok || key.Secret == "" {
		fail(c, http.StatusForbidden, "request can not be authenticated")
		return ""
	}
	tsHeader, nonce := strings.TrimSpace(c.GetHeader("X-Lpgauge-Timestamp")), strings.TrimSpace(c.GetHeader("X-Lpgauge-Nonce"))
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		fail(c, http.StatusBadRequest, "X-Lpgauge-Timestamp must be the unix time in whole seconds")
		return ""
	}
	if len(nonce) < 16 || len(nonce) > 128 {
		fail(c, http.StatusBadRequest, "X-Lpgauge-Nonce must be 16 to 128 characters, fresh for every post")
		return ""
	}
	signed := append([]byte(tsHeader+"\n"+nonce+"\n"), body...)
	if !signatureOK(key.Secret, signed, c.GetHeader("Authorization")) {
		fail(c, http.StatusForbidden, "request can not be authenticated")
		return ""
	}
	now := s.cfg.Now()
	at := time.Unix(ts, 0)
	if at.Before(now.Add(-s.cfg.MaxSkew)) || at.After(now.Add(s.cfg.MaxSkew)) {
		fail(c, http.StatusForbidden, fmt.Sprintf("X-Lpgauge-Timestamp is more than %s from the server clock: check the tester's clock", s.cfg.MaxSkew))
		return ""
	}
	return nonce
}
