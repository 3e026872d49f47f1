package api

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

const (
	gamer  = "0x6a3e000000000000000000000000000000000005"
	honest = "0x0e57000000000000000000000000000000000006"
)

// gatewayJob is a gateway operator's own Text to image job, posted with
// "source": "gateway".
func gatewayJob(orch string, ts int64, success int, rtt float64, n int) []byte {
	errs := `[]`
	if success == 0 {
		errs = `[{"error_code":"503","message":"insufficient capacity","count":1}]`
	}
	return []byte(fmt.Sprintf(`{"region":"FRA","orchestrator":%q,"success_rate":%d,"round_trip_time":%v,"errors":%s,"timestamp":%d,`+
		`"model":"ByteDance/SDXL-Lightning","model_is_warm":true,"pipeline":"Text to image","input_parameters":"{\"job\":%d}","source":"gateway"}`,
		orch, success, rtt, errs, ts, n))
}

// The done-when of issue #17 item 4 through the HTTP API: an orchestrator
// that serves the testers' probes fast and refuses a gateway operator's real
// jobs (posted through the signed ingest as source=gateway) is flagged in
// /api/errors and /api/flags; an honest one with the same volume is not.
func TestGatewayEvidenceFlagsProbeFavouritism(t *testing.T) {
	keys := map[string]PostKey{"gw-fra": {Secret: "gateway-secret-0001", Regions: []string{"FRA"}, Gateway: true},
		"tester-fra": {Secret: "tester-secret-00001", Regions: []string{"FRA"}}}
	f := newFixtureCfg(t, Config{Secret: secret, Keys: keys}, func(now time.Time) []results.Result {
		var rows []results.Result
		for i := 0; i < 24; i++ {
			at := now.Add(-time.Duration(10+i) * time.Minute)
			rows = append(rows, row(gamer, "FRA", t2i, sdxl, at, results.Success, time.Second), row(honest, "FRA", t2i, sdxl, at, results.Success, time.Second))
		}
		return rows
	})
	now := time.Now().Unix()

	// Who may post real-traffic evidence: only a signed gateway key.
	body := gatewayJob(gamer, now-30, 0, 0, 0)
	if r := f.post(t, body, sign(secret, body)); r.status != 403 || !strings.Contains(string(r.body), "keys file marks") {
		t.Errorf("unsigned gateway post: %d %s, want 403 naming the keys file option", r.status, r.body)
	}
	if r := f.postSigned(t, body, "tester-fra", "tester-secret-00001", now, "nonce-tester-000000001"); r.status != 403 || !strings.Contains(string(r.body), "gateway") {
		t.Errorf("gateway post by a tester key: %d %s, want 403", r.status, r.body)
	}
	bad := []byte(strings.Replace(string(body), `"source":"gateway"`, `"source":"operator"`, 1))
	if r := f.postSigned(t, bad, "gw-fra", "gateway-secret-0001", now, "nonce-gateway-bad00001"); r.status != 400 || !strings.Contains(string(r.body), "source") {
		t.Errorf("unknown source: %d %s, want 400 naming source", r.status, r.body)
	}

	// The gateway's jobs: the gamer refuses 20 of 24, the honest one serves
	// all 24 as fast as it serves probes. Posted at once: one ingest batch.
	var wg sync.WaitGroup
	errs := make(chan string, 48)
	for i := 0; i < 24; i++ {
		for _, o := range []string{gamer, honest} {
			wg.Add(1)
			go func(o string, i int) {
				defer wg.Done()
				success, rtt := 1, 1.05
				if o == gamer && i < 20 {
					success, rtt = 0, 0.2
				}
				r := f.postSigned(t, gatewayJob(o, now-int64(60+i), success, rtt, i), "gw-fra", "gateway-secret-0001", now, fmt.Sprintf("nonce-%s-%04d", o[:8], i))
				if r.status != 200 {
					errs <- fmt.Sprintf("%s job %d: %d %s", o, i, r.status, r.body)
				}
			}(o, i)
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}

	var got struct {
		Flags []struct {
			Code, Orchestrator, Region, Pipeline, Model, Detail string
			Evidence                                            map[string]float64
		} `json:"flags"`
		Diagnosis string `json:"diagnosis"`
	}
	r := f.get(t, "/api/errors?orchestrator="+gamer)
	r.decode(t, &got)
	if len(got.Flags) != 1 || got.Flags[0].Code != "probe_favouritism" || got.Flags[0].Region != "FRA" || got.Flags[0].Model != sdxl {
		t.Fatalf("gamer's /api/errors flags = %+v (%s), want one probe_favouritism in FRA", got.Flags, r.body)
	}
	if e := got.Flags[0].Evidence; e["probe_requests"] != 24 || e["probe_success_rate"] != 1 || e["gateway_requests"] != 24 || e["gateway_success_rate"] != 4.0/24 {
		t.Errorf("gamer evidence = %v", e)
	}
	if !strings.Contains(got.Flags[0].Detail, "real traffic only 17% of 24") {
		t.Errorf("detail = %q", got.Flags[0].Detail)
	}
	got.Flags = nil
	f.get(t, "/api/errors?orchestrator="+honest).decode(t, &got)
	if got.Flags == nil || len(got.Flags) != 0 {
		t.Errorf("honest orchestrator: flags = %+v, want []", got.Flags)
	}
	var all struct {
		Thresholds map[string]float64 `json:"thresholds"`
		Flags      []struct{ Code, Orchestrator string }
	}
	f.get(t, "/api/flags").decode(t, &all)
	if len(all.Flags) != 1 || all.Flags[0].Orchestrator != gamer || all.Thresholds["min_samples"] != 20 || all.Thresholds["favouritism_success_rate_gap"] != 0.2 {
		t.Errorf("/api/flags = %+v", all)
	}
	// The posted jobs come back from raw_stats as the gateway's.
	var raw map[string][]map[string]any
	f.get(t, "/api/raw_stats?job_type=ai&orchestrator="+honest+"&limit=1").decode(t, &raw)
	if len(raw["FRA"]) != 1 || raw["FRA"][0]["source"] != "gateway:gw-fra" {
		t.Errorf("raw of a gateway job: %v", raw)
	}
}

// A busy orchestrator's refusals are excused in its score; one that refuses
// far more than the network is flagged on /api/errors all the same.
func TestCapacityRefusalsFlaggedOnErrors(t *testing.T) {
	f := newFixture(t, func(now time.Time) []results.Result {
		var rows []results.Result
		for i := 0; i < 30; i++ {
			at := now.Add(-time.Duration(5+i) * time.Minute)
			for _, o := range []string{fast, slow, flaky, honest} {
				rows = append(rows, row(o, "FRA", t2i, sdxl, at, results.Success, time.Second))
			}
			r := row(gamer, "FRA", t2i, sdxl, at, results.Success, time.Second)
			if i < 12 {
				r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.HTTPStatus = results.Excused, "capacity", "insufficient_capacity", "insufficient capacity", 503
			}
			rows = append(rows, r)
		}
		return rows
	})
	var got struct {
		SuccessRate float64 `json:"success_rate"`
		Flags       []struct {
			Code, Detail string
			Evidence     map[string]float64
		} `json:"flags"`
	}
	f.get(t, "/api/errors?orchestrator="+gamer).decode(t, &got)
	if got.SuccessRate != 1 {
		t.Errorf("capacity refusals must stay excused in the score: success_rate %v", got.SuccessRate)
	}
	if len(got.Flags) != 1 || got.Flags[0].Code != "capacity_refusals" || got.Flags[0].Evidence["refusal_rate"] != 0.4 ||
		!strings.Contains(got.Flags[0].Detail, "refused 12 of 30 probes") {
		t.Errorf("flags = %+v, want capacity_refusals at 40%%", got.Flags)
	}
	got.Flags = nil
	f.get(t, "/api/errors?orchestrator="+fast).decode(t, &got)
	if len(got.Flags) != 0 {
		t.Errorf("fast: flags = %+v", got.Flags)
	}
}
