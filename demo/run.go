package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/lpgauge/lpgauge/internal/chserver"
	"github.com/lpgauge/lpgauge/internal/procgroup"
)

// profile is one demo orchestrator's behaviour.
type profile struct {
	Name        string
	Address     string // the orchestrator's ETH address (its identity on the leaderboard)
	MeanServer  time.Duration
	Jitter      time.Duration
	FailureRate float64
	Capacity    int
	// Live is its CPU live runner's profile (live-video-to-video, issue
	// #16): in→out latency, output frame rate (0 = the input's) and,
	// when set, a stall into each stream.
	LiveLatency                  time.Duration
	LiveOutFPS                   int
	LiveStallAfter, LiveStallFor time.Duration
}

// fleet differs on purpose: the slow one must rank last, the flaky one must
// show a success rate below 1.
// Their live runners differ too: fast streams at 50 ms, steady at 200 ms,
// flaky holds two thirds of the frame rate, slow lags 800 ms. (A stall
// fails a live probe as orchestrator_error/live_stalled, so a stalling
// profile would show only failures; the tester's tests cover that class.)
var fleet = []profile{
	{Name: "fast", Address: "0x1111111111111111111111111111111111111111", MeanServer: 150 * time.Millisecond, Jitter: 30 * time.Millisecond, Capacity: 2,
		LiveLatency: 50 * time.Millisecond},
	{Name: "steady", Address: "0x2222222222222222222222222222222222222222", MeanServer: 400 * time.Millisecond, Jitter: 50 * time.Millisecond, Capacity: 2,
		LiveLatency: 200 * time.Millisecond},
	// One job in five fails (spread evenly by the runner): fast enough to
	// beat the slow one on score, visibly below 100% success.
	{Name: "flaky", Address: "0x3333333333333333333333333333333333333333", MeanServer: 250 * time.Millisecond, Jitter: 50 * time.Millisecond, FailureRate: 0.2, Capacity: 1,
		LiveLatency: 100 * time.Millisecond, LiveOutFPS: 20},
	{Name: "slow", Address: "0x4444444444444444444444444444444444444444", MeanServer: 4 * time.Second, Jitter: 300 * time.Millisecond, Capacity: 1,
		LiveLatency: 800 * time.Millisecond},
}

// liveModel is the live pipeline every demo orchestrator serves (the CPU
// live runner's visible transform; go-livepeer names live pipelines by
// model_id, e.g. "noop").
const liveModel = "noop"

// child is a started component process.
type child struct {
	name string
	proc *procgroup.Proc
}

type supervisor struct {
	mu       sync.Mutex
	children []*child
	logDir   string
}

func (s *supervisor) start(name, bin string, args ...string) (*child, error) {
	logf, err := os.Create(filepath.Join(s.logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child gets its own process group (Ctrl-C reaches only the demo,
	// which stops children in order) and SIGKILL if the demo itself dies.
	proc, err := procgroup.Start(cmd)
	logf.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, proc: proc}
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	return c, nil
}

// stopAll stops children in reverse start order (testers before the
// leaderboard and orchestrators), SIGTERM first, SIGKILL after a grace period.
func (s *supervisor) stopAll(grace time.Duration) {
	s.mu.Lock()
	kids := append([]*child(nil), s.children...)
	s.mu.Unlock()
	for i := len(kids) - 1; i >= 0; i-- {
		kids[i].proc.Stop(grace)
	}
}

// exited reports a child that died on its own.
func (s *supervisor) exited() <-chan *child {
	ch := make(chan *child, 1)
	s.mu.Lock()
	kids := append([]*child(nil), s.children...)
	s.mu.Unlock()
	for _, c := range kids {
		go func(c *child) {
			<-c.proc.Done()
			select {
			case ch <- c:
			default:
			}
		}(c)
	}
	return ch
}

func freeAddr() (string, error) {
	p, err := chserver.FreePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

func listenable(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func waitHTTP(ctx context.Context, u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(u)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %s", u, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type scoreRow struct {
	Orchestrator string
	Name         string
	Region       string
	Score        float64
	SuccessRate  float64
	RTTScore     float64
}

// fetchBoard reads the compatible aggregated_stats endpoint exactly as the
// Explorer does and returns rows ranked by score.
func fetchBoard(ctx context.Context, base, pipeline, model string) ([]scoreRow, error) {
	q := url.Values{"pipeline": {pipeline}, "model": {model}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/aggregated_stats?"+q.Encode(), nil)
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
		return nil, fmt.Errorf("aggregated_stats: %s: %s", resp.Status, b)
	}
	var body map[string]map[string]struct {
		SuccessRate    float64 `json:"success_rate"`
		RoundTripScore float64 `json:"round_trip_score"`
		Score          float64 `json:"score"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("aggregated_stats: %w", err)
	}
	names := map[string]string{}
	for _, p := range fleet {
		names[strings.ToLower(p.Address)] = p.Name
	}
	var rows []scoreRow
	for orch, byRegion := range body {
		for region, s := range byRegion {
			rows = append(rows, scoreRow{Orchestrator: orch, Name: names[orch], Region: region, Score: s.Score, SuccessRate: s.SuccessRate, RTTScore: s.RoundTripScore})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Region != rows[j].Region {
			return rows[i].Region < rows[j].Region
		}
		return rows[i].Score > rows[j].Score
	})
	return rows, nil
}

func printBoard(w io.Writer, rows []scoreRow, pipeline, model string) {
	fmt.Fprintf(w, "\nLeaderboard — %s / %s (%s)\n", pipeline, model, time.Now().UTC().Format("15:04:05 UTC"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tRANK\tORCHESTRATOR\tPROFILE\tSCORE (0-10)\tSUCCESS\tLATENCY (0-10)")
	rank, region := 0, ""
	for _, r := range rows {
		if r.Region != region {
			region, rank = r.Region, 0
		}
		rank++
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.2f\t%.0f%%\t%.2f\n", r.Region, rank, r.Orchestrator, r.Name, r.Score*10, r.SuccessRate*100, r.RTTScore*10)
	}
	tw.Flush()
}
