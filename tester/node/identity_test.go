package node

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

// Issue #14 "a self-reported webhook address can put failures on someone
// else's address": the webhook lists A's URL, and A's GetOrchestrator names
// B's address. A fails every job. B must get no failure row (and no success
// either) from A's URL: A cannot sign B's Ping challenge, so it is not
// probed under B's address; B itself, which proves its own, is.
func TestWebhookOrchestratorNamingAnotherAddressPutsNothingOnIt(t *testing.T) {
	db := chtest.NewDB(t)
	b := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/b"}})
	a := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/a"}, Status: http.StatusInternalServerError,
		Body: "broken", ClaimAddress: b.Address})
	off := orchtest.New(t, orchtest.Behaviour{Offers: []string{"text-to-image:model/c"}, Unsigned: true})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `[{"address":%q},{"address":%q},{"address":%q}]`, a.URL, b.URL, off.URL)
	}))
	defer hook.Close()
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"-region", "FRA", "-once", "-listen", "", "-spool-dir", t.TempDir(),
		"-discovery", "webhook", "-webhook-url", hook.URL,
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name}, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if n := count(t, db, "orchestrator = '"+b.Address+"' AND outcome != 'success'"); n != 0 {
		t.Errorf("%d failure rows on B's address: A's failures landed on the address it named\n%s", n, out.String())
	}
	if n := count(t, db, "model = 'model/a'"); n != 0 {
		t.Errorf("%d rows probed A under an address it did not prove", n)
	}
	if n := count(t, db, "orchestrator = '"+b.Address+"' AND model = 'model/b' AND outcome = 'success'"); n != 1 {
		t.Errorf("%d successes for B at its own URL, want 1 (it proves its address)\n%s", n, out.String())
	}
	if n := count(t, db, "orchestrator = '"+off.Address+"'"); n != 0 {
		t.Errorf("%d rows under an address whose Ping was unsigned", n)
	}
	for _, w := range []string{"names an address it does not prove", "claimed_address=" + strings.ToLower(b.Address)[:6], "reason=other_signer", "reason=unsigned"} {
		if !strings.Contains(strings.ToLower(errOut.String()), strings.ToLower(w)) {
			t.Errorf("log lacks %q\n%s", w, errOut.String())
		}
	}
}
