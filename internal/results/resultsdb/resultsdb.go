// Package resultsdb writes results.Result and results.Round rows to
// ClickHouse: one INSERT each, columns always listed (as ClickHouse 18.16
// requires), used by the tester's writer and the leaderboard's post_stats
// ingest alike.
package resultsdb

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/results"
)

// Columns is the column list of every INSERT into probe_results, in Append order.
const Columns = "probe_id, batch_id, round_id, region, tester_id, source, orchestrator, service_uri, pipeline, model, warm, " +
	"started_at, started_at_ms, outcome, error_class, error_code, error_message, http_status, " +
	"discovery_us, connect_us, tls_us, upload_us, server_us, download_us, media_us, total_us, orch_processing_us, " +
	"conn_reused, request_bytes, response_bytes, ttft_us, output_units, input_parameters, queue_us, inference_us, " +
	"live_first_segment_us, live_first_frame_us, live_frames_in, live_frames_out, live_in_fps, live_out_fps, " +
	"live_latency_p50_us, live_latency_p95_us, live_latency_p99_us, live_stalls, live_stall_total_us, live_stall_max_us, " +
	"live_segments_lost, live_segments_reordered, live_payments_ok, live_payments_refused, live_session_us"

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
func Insert(ctx context.Context, conn driver.Conn, db string, rows []results.Result) error {
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
			us(r.Live.FirstSegment), us(r.Live.FirstFrame), r.Live.FramesIn, r.Live.FramesOut, r.Live.InFPS, r.Live.OutFPS,
			us(r.Live.LatencyP50), us(r.Live.LatencyP95), us(r.Live.LatencyP99), r.Live.Stalls, us(r.Live.StallTotal), us(r.Live.StallMax),
			r.Live.SegmentsLost, r.Live.SegmentsReorder, r.Live.PaymentsOK, r.Live.PaymentsRefused, us(r.Live.Session),
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
