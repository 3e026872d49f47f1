package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lpgauge/lpgauge/explorer-api/seed"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/cli"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// chromium finds Debian's chromium. Under CI a missing browser fails the
// test; locally it skips, loudly.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found (apt-get install -y chromium, or `make deps`): the web page cannot be tested")
	}
	t.Skip("SKIPPED: chromium not found; install it (apt-get install -y chromium) to test the web leaderboard")
	return ""
}

func artifacts(t *testing.T) string {
	dir := os.Getenv("LPGAUGE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startServer runs the binary's Run() on the seeded store and chain.
func startServer(t *testing.T) (string, seed.Network) {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with more rows seeded by more (e.g.
// seed.Live) before the server starts.
func startServerWith(t *testing.T, more func(*testing.T, seed.Network)) (string, seed.Network) {
	t.Helper()
	n := seed.Probes(t)
	if more != nil {
		more(t, n)
	}
	c := seed.NewChain(t)
	c.Orchestrator(t, seed.A, 1500, 25, 50, "https://a.example:8935")
	var cfg Config
	cfg.ch = n.DB.Config()
	cfg.serve = cli.ReadServer{Listen: "127.0.0.1:0", Window: 24 * time.Hour, QueryTimeout: 8 * time.Second, ShutdownTimeout: 5 * time.Second}
	cfg.poolTTL = time.Minute
	cfg.backend = c.Sim.Client()
	cfg.bondingManager, cfg.serviceRegistry = c.L.BondingManager.Address().Hex(), c.L.ServiceRegistry.Address().Hex()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case addr := <-ready:
		return "http://" + addr, n
	case err := <-done:
		t.Fatalf("explorer-api did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("explorer-api did not start in 30 s")
	}
	return "", n
}

// The web leaderboard, in a real browser: the table lists the seeded
// orchestrators in score order, the pipeline/model filter changes the rows
// and the URL, a column sorts, and the orchestrator page draws the seeded
// history points.
func TestWebLeaderboardInChromium(t *testing.T) {
	bin := chromium(t)
	base, _ := startServer(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	// The first run starts the browser; its context must not carry the
	// test's timeout (chromedp.Run's rule), later steps do.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	rows := func() []string {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#table tbody tr')).map(r => r.dataset.orch)`))
		if err != nil {
			t.Fatalf("read rows: %v", err)
		}
		return got
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
		if err != nil {
			t.Fatalf("count %s: %v", sel, err)
		}
		return n
	}
	waitRows := func(n int) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll('#table tbody tr').length === %d && document.querySelector('#table').getAttribute('aria-busy') === 'false'`, n),
			chromedp.WithPollingTimeout(20*time.Second))
	}
	join := func(xs ...string) string { return strings.Join(xs, ",") }
	t2iURL := base + "/?pipeline=" + strings.ReplaceAll(seed.T2I, " ", "+") + "&model=" + seed.M1

	// A shared link selects Text to image: A, B, C in score order.
	if err := chromedp.Do(ctx, chromedp.Navigate(t2iURL), waitRows(3)); err != nil {
		t.Fatalf("leaderboard page: %v", err)
	}
	if got := rows(); join(got...) != join(seed.A, seed.B, seed.C) {
		t.Errorf("rows = %v, want A, B, C in score order", got)
	}
	dir := artifacts(t)
	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			return
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Errorf("write screenshot: %v", err)
			return
		}
		t.Logf("screenshot: %s", p)
	}
	shot("explorer-leaderboard.png")

	// Sorting by p50 server time: fastest first, then reversed; the URL keeps it.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`th[data-key=server_p50]`))); err != nil {
		t.Fatal(err)
	}
	if got, sort := rows(), eval(`new URLSearchParams(location.search).get('sort')`); join(got...) != join(seed.A, seed.B, seed.C) || sort != "server_p50:asc" {
		t.Errorf("sorted by p50 ascending: rows %v, sort=%q; want A, B, C and server_p50:asc", got, sort)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`th[data-key=server_p50]`))); err != nil {
		t.Fatal(err)
	}
	if got := rows(); join(got...) != join(seed.C, seed.B, seed.A) {
		t.Errorf("sorted by p50 descending: rows %v, want C, B, A", got)
	}

	// The pipeline/model filter changes the rows and the shareable URL.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#pm`), "0"), // Image to video – stabilityai/svd
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#pm').dispatchEvent(new Event('change')); null`),
		waitRows(2),
	); err != nil {
		t.Fatalf("filter: %v", err)
	}
	if got := rows(); join(got...) != join(seed.C, seed.D) {
		t.Errorf("Image to video rows = %v, want C then D", got)
	}
	if search := eval(`location.search`); !strings.Contains(search, "pipeline=Image+to+video") || !strings.Contains(search, "model=stabilityai%2Fsvd") {
		t.Errorf("URL query %q does not carry the chosen pipeline/model", search)
	}

	// Orchestrator page by shareable link: three hourly points per series
	// (FRA, LAX, GLOBAL) in the score chart, and the on-chain facts.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/orchestrator/"+seed.A), chromedp.WaitVisible(chromedp.CSS(`#chart-score-0 svg`))); err != nil {
		t.Fatalf("orchestrator page: %v", err)
	}
	if n := count(`#chart-score-0 circle.pt`); n != 9 {
		t.Errorf("score chart has %d points, want 9 (3 hours × FRA, LAX, GLOBAL)", n)
	}
	if n := count(`#chart-server-0 polyline.line`); n != 6 {
		t.Errorf("server-time chart has %d lines, want 6 (p50 and p95 × 3 series)", n)
	}
	cards := eval(`document.querySelector('#orch .cards').innerText`)
	for _, want := range []string{"active", "1,500 LPT", "25.00% / 50.00%"} {
		if !strings.Contains(cards, want) {
			t.Errorf("orchestrator cards %q lack %q", cards, want)
		}
	}
	shot("explorer-orchestrator.png")

	// A phone-sized screen still shows the table.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(t2iURL), waitRows(3)); err != nil {
		t.Fatal(err)
	}
	shot("explorer-phone.png")
}
