package node

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/tester/orchtest"
)

// The house flags every binary shares: -log.level and -log.format take
// effect, a malformed value is refused naming the flag and the values it
// takes, and the running tester answers /healthz and /metrics.
func TestLogFlagsAndOperatorEndpoints(t *testing.T) {
	orch := orchtest.New(t, orchtest.Behaviour{})
	base := []string{"-region", "FRA", "-no-store", "-orchestrators", orch.Target(), "-models", "text-to-image:m"}
	for _, tc := range []struct{ args, want string }{
		{"-log.level=loud", `invalid value "loud" for flag -log.level: want debug, info, warn or error`},
		{"-log.format=xml", `invalid value "xml" for flag -log.format: want text or json`},
		{"-log-level=loud", `invalid value "loud" for flag -log-level`},
	} {
		err := Run(context.Background(), append([]string{"-once", "-listen", "", tc.args}, base...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.args, err, tc.want)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, append([]string{"-interval", "1s", "-listen", addr, "-log.level", "debug", "-log.format", "json", "-log-level", "debug",
			"-spool-dir", t.TempDir()}, base...), io.Discard, &errOut)
	}()
	get := func(path string) (int, string) {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := http.Get("http://" + addr + path)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v\n%s", path, err, errOut.String())
			}
		}
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, `"region":"FRA"`) {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d %.200s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") {
			t.Errorf("-log.format json wrote a non-JSON line: %q", l)
		}
	}
	if !bytes.Contains([]byte(errOut.String()), []byte("flag -log-level is deprecated: use -log.level")) {
		t.Errorf("old -log-level not warned about:\n%s", errOut.String())
	}
}
