package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lpgauge/lpgauge/explorer-api/seed"
)

// The live section of the web leaderboard, in a real browser (issue #16):
// with live sessions seeded, the leaderboard page shows the live table
// ranked A, B, C by the live score with time to first frame, latency p50 /
// p99, frame rate held and stalls; the orchestrator page shows its live row.
func TestWebLiveSectionInChromium(t *testing.T) {
	bin := chromium(t)
	base, _ := startServerWith(t, seed.Live)
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
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	eval := func(js string) []string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	waitLive := func(sel string, n int) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll(%q).length === %d`, sel, n), chromedp.WithPollingTimeout(20*time.Second))
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), waitLive(`#live-table tbody tr`, 3)); err != nil {
		t.Fatalf("live table: %v", err)
	}
	if hidden := eval(`[String(document.querySelector('#live').hidden)]`); hidden[0] != "false" {
		t.Errorf("live section hidden with live sessions in the window")
	}
	if got := eval(`Array.from(document.querySelectorAll('#live-table tbody tr')).map(r => r.dataset.orch)`); strings.Join(got, ",") != strings.Join([]string{seed.A, seed.B, seed.C}, ",") {
		t.Errorf("live rows = %v, want A, B, C by live score", got)
	}
	cells := eval(`Array.from(document.querySelectorAll('#live-table tbody tr')).map(r => r.innerText)`)
	// A: score 9.56 (0.8^0.2), first frame 420 ms, 100 / 150 ms, every frame; B: 3 stalls a minute, 80 % held.
	for i, want := range [][]string{{"9.56", "420 ms", "100 ms / 150 ms", "100%", "0.0/min"}, {"400 ms / 700 ms", "80%", "3.0/min · 5%"}, {"33%"}} {
		for _, w := range want {
			if i >= len(cells) || !strings.Contains(cells[i], w) {
				t.Errorf("live row %d %q lacks %q", i+1, cells, w)
			}
		}
	}
	if f := eval(`[document.querySelector('#live-formula').innerText]`); !strings.Contains(f[0], "0.8^(latency_p50 / 0.5 s)") {
		t.Errorf("formula line %q", f[0])
	}
	dir := artifacts(t)
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		writeShot(t, dir, "explorer-live.png", png)
	}

	// The orchestrator page: B's live row, per region.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/orchestrator/"+seed.B), waitLive(`#orch-live-table tbody tr`, 1)); err != nil {
		t.Fatalf("orchestrator live table: %v", err)
	}
	if got := eval(`Array.from(document.querySelectorAll('#orch-live-table tbody tr')).map(r => r.innerText)`); len(got) != 1 || !strings.Contains(got[0], "FRA · noop") {
		t.Errorf("B's live rows = %q, want one FRA · noop row", got)
	}
}

func writeShot(t *testing.T, dir, name string, png []byte) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("write screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", p)
}
