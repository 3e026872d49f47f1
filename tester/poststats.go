package tester

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

// PostStats is an optional sink that posts each result to a
// leaderboard-serverless compatible POST /api/post_stats, signed the way it
// checks: Authorization is the lower-case hex HMAC-SHA256 of the exact body
// under the shared secret. ClickHouse stays the record; this feed is best
// effort (bounded queue, a few retries), and excused results are not posted
// because that API would score them.
type PostStats struct {
	url    string
	secret []byte
	client *http.Client
	log    *slog.Logger
	q      chan results.Result
	wg     sync.WaitGroup
	once   sync.Once
	// Dropped counts results not posted (queue full or retries exhausted).
	Dropped func()
}

// NewPostStats starts the poster; Close stops it.
func NewPostStats(url, secret string, log *slog.Logger) (*PostStats, error) {
	if secret == "" {
		return nil, errors.New("post_stats: an HMAC secret is required (the endpoint refuses unsigned posts)")
	}
	if log == nil {
		log = slog.Default()
	}
	p := &PostStats{url: url, secret: []byte(secret), client: &http.Client{Timeout: 10 * time.Second}, log: log,
		q: make(chan results.Result, 1024)}
	p.wg.Add(1)
	go p.loop()
	return p, nil
}

// statsBody is leaderboard-serverless's Stats, AI fields.
type statsBody struct {
	Region          string     `json:"region"`
	Orchestrator    string     `json:"orchestrator"`
	SuccessRate     float64    `json:"success_rate"`
	RoundTripTime   float64    `json:"round_trip_time"`
	Errors          []statsErr `json:"errors"`
	Timestamp       int64      `json:"timestamp"`
	Model           string     `json:"model"`
	ModelIsWarm     bool       `json:"model_is_warm"`
	Pipeline        string     `json:"pipeline"`
	InputParameters string     `json:"input_parameters"`
	ResponsePayload string     `json:"response_payload"`
}

type statsErr struct {
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
	Count     int    `json:"count"`
}

// StatsBody renders a result as a post_stats body.
func StatsBody(r results.Result) ([]byte, error) {
	s := statsBody{Region: r.Region, Orchestrator: r.Orchestrator, RoundTripTime: r.Total.Seconds(), Errors: []statsErr{},
		Timestamp: r.StartedAt.Unix(), Model: r.Model, ModelIsWarm: r.Warm, Pipeline: r.Pipeline,
		InputParameters: r.InputParameters, ResponsePayload: ""}
	if r.Outcome == results.Success {
		s.SuccessRate = 1
	} else {
		s.Errors = append(s.Errors, statsErr{ErrorCode: r.ErrorClass + "/" + r.ErrorCode, Message: results.Truncate(r.ErrorMessage, 256), Count: 1})
	}
	return json.Marshal(s)
}

// Sign is the Authorization value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Write implements Sink without blocking the probe.
func (p *PostStats) Write(_ context.Context, r results.Result) error {
	if r.Outcome == results.Excused {
		return nil
	}
	select {
	case p.q <- r:
	default:
		if p.Dropped != nil {
			p.Dropped()
		}
		p.log.Warn("post_stats queue full; result not posted (it is in ClickHouse)", "probe_id", r.ProbeID)
	}
	return nil
}

// Close posts what is queued (until ctx ends) and stops.
func (p *PostStats) Close(ctx context.Context) error {
	p.once.Do(func() { close(p.q) })
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("post_stats: %d results not posted: %w", len(p.q), ctx.Err())
	}
}

func (p *PostStats) loop() {
	defer p.wg.Done()
	for r := range p.q {
		if err := p.post(r); err != nil {
			if p.Dropped != nil {
				p.Dropped()
			}
			p.log.Warn("post_stats failed", "probe_id", r.ProbeID, "err", err)
		}
	}
}

func (p *PostStats) post(r results.Result) error {
	body, err := StatsBody(r)
	if err != nil {
		return err
	}
	var last error
	for attempt, wait := 0, 500*time.Millisecond; attempt < 3; attempt, wait = attempt+1, wait*2 {
		if attempt > 0 {
			time.Sleep(wait)
		}
		req, err := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", Sign(p.secret, body))
		resp, err := p.client.Do(req)
		if err != nil {
			last = err
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode/100 == 4:
			return fmt.Errorf("post_stats refused %d: %s", resp.StatusCode, msg) // retrying will not help
		default:
			last = fmt.Errorf("post_stats %d: %s", resp.StatusCode, msg)
		}
	}
	return last
}

// Tee sends each result to several sinks; the first is the record (its
// error is returned), the rest are feeds.
type Tee []Sink

// Write implements Sink.
func (t Tee) Write(ctx context.Context, r results.Result) error {
	var first error
	for i, s := range t {
		if err := s.Write(ctx, r); err != nil && i == 0 {
			first = err
		}
	}
	return first
}
