package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chembed"
)

// buildBinary builds cmd/leaderboard into dir, with the chdb tag or without.
func buildBinary(t *testing.T, dir string, chdb bool) string {
	t.Helper()
	out := filepath.Join(dir, "leaderboard")
	args := []string{"build", "-o", out}
	if chdb {
		args = append(args, "-tags", "chdb")
	}
	cmd := exec.Command("go", append(args, ".")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, b)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestEmbeddedStoreServesTheExplorer starts the real binary with
// -store embedded:DIR and no ClickHouse server anywhere (-clickhouse.addr
// points at a closed port), posts probes through post_stats, and asks every
// call the Livepeer Explorer makes: each answers 200 with the posted data.
// Then the same directory, reopened by a second run, still holds them.
func TestEmbeddedStoreServesTheExplorer(t *testing.T) {
	if !chembed.Available() {
		t.Log("the test binary is built without the chdb tag; the leaderboard binary is built with it here")
	}
	bin := buildBinary(t, t.TempDir(), true)
	data := filepath.Join(t.TempDir(), "lpgauge-data")
	const secret = "embedded-store-secret"
	closed := freeAddr(t) // nothing listens here: no server is used

	start := func() (string, func()) {
		addr := freeAddr(t)
		cmd := exec.Command(bin, "-listen", addr, "-store", "embedded:"+data, "-clickhouse.addr", closed)
		cmd.Env = append(os.Environ(), "SECRET="+secret)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stop := func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("leaderboard exit: %v\n%s", err, logs.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("leaderboard did not stop on SIGINT\n%s", logs.String())
			}
		}
		deadline := time.Now().Add(90 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/api/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return addr, stop
				}
			}
			if time.Now().After(deadline) || cmd.ProcessState != nil {
				stop()
				t.Fatalf("leaderboard -store embedded: did not become healthy\n%s", logs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	addr, stop := start()
	now := time.Now().Add(-10 * time.Minute).Unix()
	const model, pipeline = "ByteDance/SDXL-Lightning", "Text to image"
	orchs := []string{"0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"}
	for i, o := range orchs {
		for k := range 3 {
			body := fmt.Appendf(nil, `{"region":"FRA","orchestrator":"%s","success_rate":1,"round_trip_time":%v,"errors":[],"timestamp":%d,`+
				`"model":"%s","model_is_warm":true,"pipeline":"%s","input_parameters":"{}","response_payload":"{}"}`,
				o, 0.5+float64(i)+0.1*float64(k), now+int64(k), model, pipeline)
			m := hmac.New(sha256.New, []byte(secret))
			m.Write(body)
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/post_stats", bytes.NewReader(body))
			req.Header.Set("Authorization", hex.EncodeToString(m.Sum(nil)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("post_stats = %d %s", resp.StatusCode, b)
			}
		}
	}
	q := "pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning"
	// The Explorer's calls (leaderboard-serverless's endpoints), each with
	// what it must contain.
	calls := map[string]string{
		"/api/regions":               `"FRA"`,
		"/api/pipelines":             `"Text to image"`,
		"/api/aggregated_stats?" + q: orchs[1],
		"/api/raw_stats?orchestrator=" + orchs[0] + "&" + q: `"round_trip_time":0.7`,
		"/api/top_ai_score?orchestrator=" + orchs[0]:        `"pipeline":"Text to image"`,
	}
	check := func(addr string) {
		for path, want := range calls {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), want) || !json.Valid(b) {
				t.Errorf("%s = %d %s, want 200 JSON containing %s", path, resp.StatusCode, b, want)
			}
		}
	}
	check(addr)
	stop()
	// The data outlives the process.
	addr, stop = start()
	check(addr)
	stop()
}

// TestEmbeddedStoreErrorsSayWhatToDo: -store embedded: on a binary built
// without the chdb tag, or with libchdb missing, exits 1 with one sentence
// naming the fix — never a Go panic.
func TestEmbeddedStoreErrorsSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		chdb bool
		env  string
		want []string
	}{
		{"without the chdb tag", false, "", []string{"chdb build tag"}},
		{"libchdb missing", true, "CHDB_LIB_PATH=" + filepath.Join(dir, "missing", "libchdb.so"), []string{"make deps", "CHDB_LIB_PATH"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := buildBinary(t, t.TempDir(), tc.chdb)
			cmd := exec.Command(bin, "-listen", freeAddr(t), "-store", "embedded:"+filepath.Join(dir, "data"))
			cmd.Env = append(os.Environ(), tc.env)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit = %v, want status 1\n%s", err, out)
			}
			if strings.Contains(string(out), "panic") || strings.Contains(string(out), "goroutine ") {
				t.Errorf("a Go panic instead of an error:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
		})
	}
}
