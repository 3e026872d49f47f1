package api

import (
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

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/gateway/capability"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/regions"
)

// DefaultMaxPostBytes bounds a post_stats body: one Stats object is a few
// KiB; anything far larger is an error or an attack.
const DefaultMaxPostBytes = 256 << 10

// postedStats is the Stats object AI testers post to leaderboard-serverless.
type postedStats struct {
	Region          string      `json:"region"`
	Orchestrator    string      `json:"orchestrator"`
	SuccessRate     *float64    `json:"success_rate"`
	RoundTripTime   float64     `json:"round_trip_time"`
	Errors          []statError `json:"errors"`
	Timestamp       int64       `json:"timestamp"`
	Model           string      `json:"model"`
	ModelIsWarm     bool        `json:"model_is_warm"`
	Pipeline        string      `json:"pipeline"`
	InputParameters string      `json:"input_parameters"`
	ResponsePayload string      `json:"response_payload"`
}

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
	if keyID != "" {
		if !s.signedOK(c, keyID, body) {
			return
		}
	} else if !signatureOK(s.cfg.Secret, body, c.GetHeader("Authorization")) {
		fail(c, http.StatusForbidden, "request can not be authenticated")
		return
	}
	r, err := s.resultFromPost(body)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if keyID != "" {
		r.Source, r.TesterID = "post_stats:"+keyID, keyID
	}
	if _, err := s.store.Ingest(ctx, r); err != nil {
		s.storeFailed(c, "ingest", err)
		return
	}
	// A re-post of the same body is acknowledged the same way: it is stored once.
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte("ok"))
}

// resultFromPost validates a posted Stats object and maps it onto a probe
// row. The probe id is the hash of the body, so the same post is one row.
func (s *Server) resultFromPost(body []byte) (results.Result, error) {
	var p postedStats
	if err := json.Unmarshal(body, &p); err != nil {
		return results.Result{}, fmt.Errorf("body is not a JSON Stats object: %v", err)
	}
	reg, ok := regions.Lookup(p.Region)
	if !ok || reg.Code == regions.Global || !reg.Has(regions.AI) {
		return results.Result{}, fmt.Errorf("invalid region %q: post from one of %s", p.Region, strings.Join(regions.Codes(regions.AI), ", "))
	}
	orch := strings.ToLower(strings.TrimSpace(p.Orchestrator))
	if !addressRE.MatchString(orch) {
		return results.Result{}, fmt.Errorf("invalid orchestrator %q: want a 0x-prefixed 40-hex-digit address", p.Orchestrator)
	}
	if p.Pipeline == "" || p.Model == "" {
		return results.Result{}, errors.New("pipeline and model are required: this leaderboard stores AI job stats only")
	}
	if p.SuccessRate == nil || math.IsNaN(*p.SuccessRate) || *p.SuccessRate < 0 || *p.SuccessRate > 1 {
		return results.Result{}, errors.New("success_rate is required and must be 0 (failed job) or 1 (succeeded)")
	}
	if math.IsNaN(p.RoundTripTime) || p.RoundTripTime < 0 || p.RoundTripTime > 24*3600 {
		return results.Result{}, errors.New("round_trip_time must be seconds between 0 and 86400")
	}
	now := s.cfg.Now().UTC()
	at := now
	if p.Timestamp != 0 {
		at = time.Unix(p.Timestamp, 0).UTC()
		if at.After(now.Add(5*time.Minute)) || p.Timestamp < 0 {
			return results.Result{}, fmt.Errorf("timestamp %d is not a plausible test time: give the job's unix start time in seconds", p.Timestamp)
		}
	}
	pipeline := p.Pipeline
	if pl, ok := capability.Lookup(pipeline); ok {
		pipeline = pl.Name
	}
	sum := sha256.Sum256(body)
	r := results.Result{
		ProbeID:         results.ProbeID("post_stats", hex.EncodeToString(sum[:])),
		Region:          reg.Code,
		Source:          "post_stats",
		Orchestrator:    orch,
		Pipeline:        pipeline,
		Model:           p.Model,
		Warm:            p.ModelIsWarm,
		StartedAt:       at,
		Outcome:         results.Failure,
		Total:           time.Duration(p.RoundTripTime * float64(time.Second)),
		InputParameters: p.InputParameters,
	}
	if *p.SuccessRate == 1 {
		r.Outcome = results.Success
	} else {
		r.ErrorClass = "posted"
		if len(p.Errors) > 0 {
			r.ErrorCode, r.ErrorMessage = p.Errors[0].ErrorCode, p.Errors[0].Message
		}
	}
	return r, nil
}

// signedOK checks the per-tester mode: a known key, a timestamp within
// MaxSkew, a fresh nonce, and the HMAC over timestamp, nonce and body. It
// writes the refusal itself. The nonce is claimed only after the signature
// verifies, so nobody can burn another tester's nonces.
func (s *Server) signedOK(c *gin.Context, keyID string, body []byte) bool {
	secret, ok := s.cfg.Keys[keyID]
	if !ok || secret == "" {
		fail(c, http.StatusForbidden, "request can not be authenticated")
		return false
	}
	tsHeader, nonce := strings.TrimSpace(c.GetHeader("X-Lpgauge-Timestamp")), strings.TrimSpace(c.GetHeader("X-Lpgauge-Nonce"))
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		fail(c, http.StatusBadRequest, "X-Lpgauge-Timestamp must be the unix time in whole seconds")
		return false
	}
	if len(nonce) < 16 || len(nonce) > 128 {
		fail(c, http.StatusBadRequest, "X-Lpgauge-Nonce must be 16 to 128 characters, fresh for every post")
		return false
	}
	signed := append([]byte(tsHeader+"\n"+nonce+"\n"), body...)
	if !signatureOK(secret, signed, c.GetHeader("Authorization")) {
		fail(c, http.StatusForbidden, "request can not be authenticated")
		return false
	}
	now := s.cfg.Now()
	at := time.Unix(ts, 0)
	if at.Before(now.Add(-s.cfg.MaxSkew)) || at.After(now.Add(s.cfg.MaxSkew)) {
		fail(c, http.StatusForbidden, fmt.Sprintf("X-Lpgauge-Timestamp is more than %s from the server clock: check the tester's clock", s.cfg.MaxSkew))
		return false
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	fresh, err := s.store.ClaimNonce(ctx, keyID, nonce, now.Add(-2*s.cfg.MaxSkew))
	if err != nil {
		s.storeFailed(c, "nonce", err)
		return false
	}
	if !fresh {
		fail(c, http.StatusForbidden, "replayed request: this nonce was already used")
		return false
	}
	return true
}
