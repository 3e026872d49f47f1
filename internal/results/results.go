// Package results defines the rows the tester writes and the leaderboard
// reads: one Result per probe, one Round per round, and the outcome classes
// the score branches on. Writing them to ClickHouse is resultsdb's job.
package results

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"
)

// Outcome of a probe as the score sees it.
type Outcome string

const (
	Success Outcome = "success"
	Failure Outcome = "failure"
	// Excused marks a tester-side fault (its own network, payment setup, price
	// ceiling): stored for the record, never scored against the orchestrator.
	Excused Outcome = "excused"
)

// MaxErrorMessage bounds the stored error message, in bytes.
const MaxErrorMessage = 512

// Result is one probe: one timed job against one orchestrator for one
// pipeline and model from one region's tester.
type Result struct {
	ProbeID  string
	BatchID  string
	RoundID  string
	Region   string
	TesterID string
	Source   string

	Orchestrator string // lower-case 0x address
	ServiceURI   string
	Pipeline     string // capability name, e.g. "Text to image"
	Model        string
	Warm         bool

	StartedAt time.Time
	Outcome   Outcome

	ErrorClass   string
	ErrorCode    string
	ErrorMessage string
	HTTPStatus   int

	Discovery time.Duration
	Connect   time.Duration
	TLS       time.Duration
	Upload    time.Duration
	Server    time.Duration
	Download  time.Duration
	Media     time.Duration
	// Total is the job as a gateway with a live session sees it: upload +
	// server + download + media. It is what the score's round trip reads.
	Total time.Duration
	// Wall is the whole probe on our clock, probe start to output
	// validated: discovery, connect and TLS included. Not stored (the
	// phases are); the tester uses it to match probes with its own faults.
	Wall           time.Duration
	OrchProcessing time.Duration
	TTFT           time.Duration
	// Queue and Inference split Server when the orchestrator reports them
	// (issue #19): waiting for a runner, then the runner inferring. Both 0
	// when not reported; Server is then the combined phase.
	Queue, Inference time.Duration
	// Live holds the live-video-to-video measures (issue #16); zero for
	// every batch pipeline.
	Live Live

	ConnReused      bool
	RequestBytes    int64
	ResponseBytes   int64
	OutputUnits     float64
	InputParameters string
}

// Live is what one live-video-to-video probe measured: a short session
// started as a go-livepeer gateway starts one, a synthetic stream published
// over trickle and the transformed stream read back. For a live row Total
// is the time to the first output segment (start POST sent → first segment
// of the -out channel read whole, go-livepeer's ai_first_segment_delay_ms)
// and Upload/Server/Download are the start request's phases.
type Live struct {
	FirstSegment time.Duration // start POST sent → first output segment read whole
	FirstFrame   time.Duration // start POST sent → first output frame decoded
	FramesIn     uint32        // frames published
	FramesOut    uint32        // transformed frames read back and matched to an input frame
	InFPS        float64       // frames published per second of stream time
	OutFPS       float64       // matched output frames per second over the output's span
	// LatencyP50/P95/P99: per frame, published → its transformed frame read.
	LatencyP50, LatencyP95, LatencyP99 time.Duration
	Stalls                             uint32        // output gaps longer than the stall bound while input flowed
	StallTotal                         time.Duration // their summed length
	StallMax                           time.Duration // the longest
	// SegmentsLost is the larger of two counts, since either alone misses a
	// kind of loss: the output (-out channel) seq numbers missing between
	// the lowest and the highest seq read, and the input segments published
	// none of whose frames came back intact (decoded, stamp readable,
	// transformed or not) in any output segment read before the session
	// ended, the input's last segments included (a runner that drops a
	// segment publishes the next one under the next seq, so only the frames
	// show it). 0 when no output segment was read at all: the verdict
	// (live_no_output, live_session_closed) says that, not this count.
	SegmentsLost    uint32
	SegmentsReorder uint32        // output frames that came back out of order
	PaymentsOK      uint32        // live payments the orchestrator accepted (start + periodic)
	PaymentsRefused uint32        // live payments it refused
	Session         time.Duration // start POST sent → session ended
}

// ProbeID derives a deterministic probe id from the parts that identify a
// probe (region, tester, round slot, orchestrator, pipeline, model, attempt):
// the same probe always gets the same id, so a retried write is recognisable.
func ProbeID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// BatchID derives a deterministic batch id from the probe ids it carries.
func BatchID(rows []Result) string {
	h := sha256.New()
	for _, r := range rows {
		h.Write([]byte(r.ProbeID))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Normalize puts a row into its stored form: lower-case address, UTC time,
// a bounded valid-UTF-8 message, a known outcome.
func (r *Result) Normalize() {
	r.Orchestrator = strings.ToLower(strings.TrimSpace(r.Orchestrator))
	r.Region = strings.ToUpper(strings.TrimSpace(r.Region))
	r.StartedAt = r.StartedAt.UTC()
	r.ErrorMessage = Truncate(strings.ToValidUTF8(r.ErrorMessage, "?"), MaxErrorMessage)
	switch r.Outcome {
	case Success, Failure, Excused:
	default:
		r.Outcome = Failure
	}
	if r.Source == "" {
		r.Source = "tester"
	}
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
