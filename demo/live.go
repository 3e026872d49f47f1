package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// liveRow is one orchestrator's live-video-to-video numbers in one region,
// as the leaderboard's /api/live_stats gives them (issue #16).
type liveRow struct {
	Orchestrator, Name, Region, Model string
	Score, SuccessRate                float64
	FirstFrame                        float64 // s, median
	LatencyP50, LatencyP99            float64 // s, median of the sessions'
	FPSRatio, StallsPerMinute         float64
	Sessions                          uint64
}

// fetchLive reads /api/live_stats and returns rows ranked by live score
// within each region.
func fetchLive(ctx context.Context, base string) ([]liveRow, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/live_stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("live_stats: %s: %s", resp.Status, b)
	}
	var body struct {
		Stats []struct {
			Orchestrator    string  `json:"orchestrator"`
			Region          string  `json:"region"`
			Model           string  `json:"model"`
			Score           float64 `json:"score"`
			SuccessRate     float64 `json:"success_rate"`
			FirstFrameP50   float64 `json:"first_frame_p50"`
			LatencyP50      float64 `json:"latency_p50"`
			LatencyP99      float64 `json:"latency_p99"`
			FPSRatio        float64 `json:"fps_ratio"`
			StallsPerMinute float64 `json:"stalls_per_minute"`
			Sessions        uint64  `json:"sessions"`
		} `json:"stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("live_stats: %w", err)
	}
	names := map[string]string{}
	for _, p := range fleet {
		names[strings.ToLower(p.Address)] = p.Name
	}
	var rows []liveRow
	for _, s := range body.Stats {
		rows = append(rows, liveRow{Orchestrator: s.Orchestrator, Name: names[s.Orchestrator], Region: s.Region, Model: s.Model,
			Score: s.Score, SuccessRate: s.SuccessRate, FirstFrame: s.FirstFrameP50, LatencyP50: s.LatencyP50, LatencyP99: s.LatencyP99,
			FPSRatio: s.FPSRatio, StallsPerMinute: s.StallsPerMinute, Sessions: s.Sessions})
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Region != rows[j].Region {
			return rows[i].Region < rows[j].Region
		}
		if rows[i].Score != rows[j].Score {
			return rows[i].Score > rows[j].Score
		}
		return rows[i].Orchestrator < rows[j].Orchestrator
	})
	return rows, nil
}

func ms(s float64) string {
	if s == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f ms", s*1000)
}

// printLive prints the live table under the batch board.
func printLive(w io.Writer, rows []liveRow) {
	fmt.Fprintf(w, "\nLive video — live-video-to-video (%s)\n", time.Now().UTC().Format("15:04:05 UTC"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tRANK\tORCHESTRATOR\tPROFILE\tMODEL\tLIVE SCORE (0-10)\tSUCCESS\tFIRST FRAME\tLATENCY P50/P99\tFPS HELD\tSTALLS/MIN\tSESSIONS")
	rank, region := 0, ""
	for _, r := range rows {
		if r.Region != region {
			region, rank = r.Region, 0
		}
		rank++
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.2f\t%.0f%%\t%s\t%s / %s\t%.0f%%\t%.1f\t%d\n", r.Region, rank, r.Orchestrator, r.Name, r.Model,
			r.Score*10, r.SuccessRate*100, ms(r.FirstFrame), ms(r.LatencyP50), ms(r.LatencyP99), r.FPSRatio*100, r.StallsPerMinute, r.Sessions)
	}
	tw.Flush()
}
