// Package results defines the probe Result row shared by the tester (which
// writes it), the leaderboard (which reads and ingests it) and the store, and
// the one INSERT that writes it: columns always listed, as ClickHouse 18.16
// requires.
package results

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
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

	ConnReused      bool
	RequestBytes    int64
	ResponseBytes   int64
	OutputUnits     float64
	InputParameters string
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

// Columns is the column list of every INSERT into probe_results, in Append order.
const Columns = "probe_id, batch_id, round_id, region, tester_id, source, orchestrator, service_uri, pipeline, model, warm, " +
	"started_at, started_at_ms, outcome, error_class, error_code, error_message, http_status, " +
	"discovery_us, connect_us, tls_us, upload_us, server_us, download_us, media_us, total_us, orch_processing_us, " +
	"conn_reused, request_bytes, response_bytes, ttft_us, output_units, input_parameters, queue_us, inference_us"

func us(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Microsecond)
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func nonNeg(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// Insert writes rows in one batch with an explicit column list. The caller
// sets BatchID (or leaves it empty to have it derived from the probe ids).
func Insert(ctx context.Context, conn driver.Conn, db string, rows []Result) error {
	if len(rows) == 0 {
		return nil
	}
	if !chclient.ValidIdent(db) {
		return fmt.Errorf("insert results: invalid database %q", db)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".probe_results ("+Columns+")")
	if err != nil {
		return fmt.Errorf("insert results: prepare: %w", err)
	}
	defer batch.Abort() //nolint:errcheck // no-op after Send
	for i := range rows {
		r := rows[i]
		r.Normalize()
		if err := batch.Append(
			r.ProbeID, r.BatchID, r.RoundID, r.Region, r.TesterID, r.Source, r.Orchestrator, r.ServiceURI, r.Pipeline, r.Model, b2u(r.Warm),
			r.StartedAt, uint16(r.StartedAt.Nanosecond()/int(time.Millisecond)), string(r.Outcome), r.ErrorClass, r.ErrorCode, r.ErrorMessage, uint16(r.HTTPStatus),
			us(r.Discovery), us(r.Connect), us(r.TLS), us(r.Upload), us(r.Server), us(r.Download), us(r.Media), us(r.Total), us(r.OrchProcessing),
			b2u(r.ConnReused), nonNeg(r.RequestBytes), nonNeg(r.ResponseBytes), us(r.TTFT), r.OutputUnits, r.InputParameters,
			us(r.Queue), us(r.Inference),
		); err != nil {
			return fmt.Errorf("insert results: append row %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert results: send %d rows: %w", len(rows), err)
	}
	return nil
}

// BatchRows counts the rows of a batch already stored: after an ambiguous
// insert failure the writer asks before retrying, so nothing is stored twice.
func BatchRows(ctx context.Context, conn driver.Conn, db, batchID string) (uint64, error) {
	if !chclient.ValidIdent(db) {
		return 0, fmt.Errorf("batch rows: invalid database %q", db)
	}
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".probe_results WHERE batch_id = ?", batchID).Scan(&n)
	return n, err
}
