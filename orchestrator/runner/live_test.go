package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/media/livets"
)

// liveRig is one live session as go-livepeer sets it up: an orchestrator's
// trickle server with the four channels of a mid, the runner started with
// the swapped URLs, and the gateway's publisher and output subscriber.
type liveRig struct {
	t       *testing.T
	srv     *trickle.Server
	base    string
	runner  *Runner
	rurl    string
	mid     string
	enc     *livets.Encoder
	pub     *trickle.Publisher
	sent    map[uint32]time.Time // frame number → when its segment was fully sent
	mu      sync.Mutex
	outs    []outRecord
	outDone chan struct{}
}

type outRecord struct {
	seq     int
	at      time.Time
	frames  []livets.Frame
	readErr error
}

func newLiveRig(t *testing.T, p LiveProfile) *liveRig {
	t.Helper()
	srv := trickle.NewServer(trickle.ServerConfig{BasePath: "/ai/trickle/"})
	ts := httptest.NewServer(srv)
	rig := &liveRig{t: t, srv: srv, base: ts.URL + "/ai/trickle/", mid: "f0e1d2c3",
		enc: livets.NewEncoder(livets.DefaultFormat), sent: map[uint32]time.Time{}, outDone: make(chan struct{})}
	for name, mime := range map[string]string{"": "video/MP2T", "-out": "video/MP2T", "-control": "application/json", "-events": "application/json"} {
		if err := srv.CreateChannel(rig.mid+name, mime); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{Pipeline: "live-video-to-video", ModelID: "noop", Live: p})
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(r.Handler())
	rig.runner, rig.rurl = r, rs.URL
	t.Cleanup(func() { srv.Stop(); r.Close(); rs.Close(); ts.Close() })

	// The gateway subscribes to the output before the stream starts.
	sub := trickle.NewSubscriber(rig.base+rig.mid+"-out", nil, -1)
	go func() {
		defer close(rig.outDone)
		defer sub.Close()
		for {
			seg, err := sub.Read(context.Background())
			var gone *trickle.SequenceNonexistentError
			if errors.As(err, &gone) {
				sub.SetSeq(gone.Latest) // fell behind the ring: as go-livepeer's gateway, jump
				continue
			}
			if err != nil {
				return
			}
			data, err := io.ReadAll(seg.Body)
			_ = seg.Body.Close()
			at := time.Now()
			frames, derr := livets.Decode(data)
			rig.mu.Lock()
			rig.outs = append(rig.outs, outRecord{seq: seg.Seq, at: at, frames: frames, readErr: errors.Join(err, derr)})
			rig.mu.Unlock()
		}
	}()
	rig.start()
	rig.pub = trickle.NewPublisher(rig.base+rig.mid, nil)
	return rig
}

// start is O's call to R: go-livepeer's runner request body with the
// trickle URLs swapped (conformance http/runner_request_body.json).
func (rig *liveRig) start() {
	body := strings.NewReplacer("https://orchestrator.example:8935/ai/trickle/", rig.base).Replace(
		`{"control_url":"https://orchestrator.example:8935/ai/trickle/f0e1d2c3-control","events_url":"https://orchestrator.example:8935/ai/trickle/f0e1d2c3-events","gateway_request_id":"5e6f7a8b","manifest_id":"f0e1d2c3","model_id":"noop","params":{"prompt":"a watercolor city","seed":42},"publish_url":"https://orchestrator.example:8935/ai/trickle/f0e1d2c3-out","stream_id":"str_abc123","subscribe_url":"https://orchestrator.example:8935/ai/trickle/f0e1d2c3"}`)
	resp, err := http.Post(rig.rurl+"/live-video-to-video", "application/json", strings.NewReader(body))
	if err != nil {
		rig.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		rig.t.Fatalf("start: %d %s", resp.StatusCode, b)
	}
	// The runner subscribes from -1: wait until its GET holds the live edge.
	rig.waitHealth("OK")
	time.Sleep(50 * time.Millisecond)
}

func (rig *liveRig) health() string {
	resp, err := http.Get(rig.rurl + "/health")
	if err != nil {
		rig.t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h.Status
}

func (rig *liveRig) waitHealth(want string) {
	rig.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if rig.health() == want {
			return
		}
	}
	rig.t.Fatalf("/health never said %s (now %s)", want, rig.health())
}

// publish sends n segments of per frames each, paced in real time.
func (rig *liveRig) publish(n, per int) {
	rig.t.Helper()
	step := time.Duration(per) * time.Second / time.Duration(rig.enc.Format().FPS)
	next := time.Now()
	for i := 0; i < n; i++ {
		first := uint32(i * per)
		seg := rig.enc.Segment(first, per)
		if _, err := rig.pub.Write(context.Background(), bytes.NewReader(seg)); err != nil {
			rig.t.Fatalf("publish %d: %v", i, err)
		}
		now := time.Now()
		for k := 0; k < per; k++ {
			rig.sent[first+uint32(k)] = now
		}
		next = next.Add(step)
		time.Sleep(time.Until(next))
	}
}

// finish waits for want output segments (or settle), then ends the session
// as a gateway does (DELETE of the input channel) and as O then does.
func (rig *liveRig) finish(want int, settle time.Duration) []outRecord {
	rig.t.Helper()
	deadline := time.Now().Add(settle)
	for time.Now().Before(deadline) {
		rig.mu.Lock()
		got := len(rig.outs)
		rig.mu.Unlock()
		if want > 0 && got >= want {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := rig.pub.Close(context.Background()); err != nil {
		rig.t.Fatal(err)
	}
	rig.waitHealth("IDLE")
	for _, c := range []string{"-out", "-control", "-events"} {
		rig.srv.CloseChannel(rig.mid + c)
	}
	<-rig.outDone
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return slices.Clone(rig.outs)
}

func frameNumbers(outs []outRecord) []uint32 {
	var nums []uint32
	for _, o := range outs {
		for _, f := range o.frames {
			nums = append(nums, f.Number)
		}
	}
	return nums
}

// The default profile: one transformed output segment per input segment,
// from seq 0, every frame back with its number, intact and transformed;
// control updates applied, keepalives ignored, status events published,
// /health OK while streaming and IDLE when the input ends.
func TestLiveRunnerTransformsEverySegment(t *testing.T) {
	rig := newLiveRig(t, LiveProfile{EventInterval: 100 * time.Millisecond})
	events := trickle.NewSubscriber(rig.base+rig.mid+"-events", nil, 0)
	defer events.Close()
	control := trickle.NewPublisher(rig.base+rig.mid+"-control", nil)
	for _, msg := range []string{`{"keep":"alive"}`, `{"prompt":"a pencil sketch","seed":7}`} {
		if _, err := control.Write(context.Background(), strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	rig.publish(6, 3)
	if h := rig.health(); h != "OK" {
		t.Errorf("/health while streaming: %s, want OK", h)
	}
	var sawUpdate bool
	for i := 0; i < 20 && !sawUpdate; i++ {
		seg, err := events.Read(context.Background())
		var gone *trickle.SequenceNonexistentError
		if errors.As(err, &gone) {
			events.SetSeq(gone.Latest)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(seg.Body)
		_ = seg.Body.Close()
		var ev statusEvent
		if err := json.Unmarshal(b, &ev); err != nil || ev.Type != "status" {
			t.Fatalf("event %s: %v", b, err)
		}
		sawUpdate = string(ev.InferenceStatus.LastParams) == `{"prompt":"a pencil sketch","seed":7}`
	}
	if !sawUpdate {
		t.Error("no status event carried the params update as last_params")
	}
	outs := rig.finish(6, 5*time.Second)
	if len(outs) != 6 {
		t.Fatalf("%d output segments, want 6", len(outs))
	}
	for i, o := range outs {
		if o.seq != i || o.readErr != nil || len(o.frames) != 3 {
			t.Fatalf("output %d: seq %d, %d frames, %v", i, o.seq, len(o.frames), o.readErr)
		}
		for k, f := range o.frames {
			if f.Number != uint32(3*i+k) || !f.Transformed || !f.Intact || f.PTS != rig.enc.FramePTS(f.Number) {
				t.Fatalf("output %d frame %d: %+v", i, k, f)
			}
		}
	}
	st := rig.runner.LiveStats()
	if st.ControlMessages != 2 || st.ParamsUpdates != 1 || st.InputSegments != 6 || st.OutputSegments != 6 {
		t.Errorf("stats %+v: want 2 control messages, 1 params update, 6 in, 6 out", st)
	}
}

// Each profile is visible from the gateway's side.
func TestLiveRunnerProfiles(t *testing.T) {
	t.Run("latency", func(t *testing.T) {
		const latency = 120 * time.Millisecond
		rig := newLiveRig(t, LiveProfile{Latency: latency})
		rig.publish(8, 3)
		outs := rig.finish(8, 5*time.Second)
		var lat []time.Duration
		for _, o := range outs {
			for _, f := range o.frames {
				lat = append(lat, o.at.Sub(rig.sent[f.Number]))
			}
		}
		if len(lat) != 24 {
			t.Fatalf("%d frames back, want 24", len(lat))
		}
		slices.Sort(lat)
		med := lat[len(lat)/2]
		t.Logf("in→out latency: median %v (profile %v), min %v, max %v", med, latency, lat[0], lat[len(lat)-1])
		// Not earlier than the profile (it is applied), and not much later
		// (processing is inside it, not added); under -race on a loaded
		// machine decoding alone can take tens of ms a segment.
		slack := 40 * time.Millisecond
		if raceEnabled {
			slack = 400 * time.Millisecond
		}
		if med < latency-10*time.Millisecond || med > latency+slack {
			t.Errorf("median latency %v, want %v (+ at most %v)", med, latency, slack)
		}
	})
	t.Run("out-fps", func(t *testing.T) {
		rig := newLiveRig(t, LiveProfile{OutFPS: 10})
		rig.publish(5, 6)
		outs := rig.finish(5, 5*time.Second)
		nums := frameNumbers(outs)
		if len(outs) != 5 || len(nums) != 10 {
			t.Fatalf("%d segments, %d frames out of 30 at 30 fps, want 5 segments, 10 frames (10 fps)", len(outs), len(nums))
		}
		if fr := outs[1].frames; fr[1].PTS-fr[0].PTS != 100*time.Millisecond {
			t.Errorf("output frame spacing %v, want 100 ms", fr[1].PTS-fr[0].PTS)
		}
	})
	t.Run("stall", func(t *testing.T) {
		rig := newLiveRig(t, LiveProfile{StallAfter: 250 * time.Millisecond, StallFor: 500 * time.Millisecond})
		rig.publish(12, 3) // 1.2 s of input at 100 ms a segment
		outs := rig.finish(0, time.Second)
		var gap time.Duration
		for i := 1; i < len(outs); i++ {
			gap = max(gap, outs[i].at.Sub(outs[i-1].at))
		}
		st := rig.runner.LiveStats()
		if gap < 400*time.Millisecond || st.StalledSegments < 3 || len(outs)+st.StalledSegments != 12 || len(outs) < 3 {
			t.Errorf("stall of 500 ms: longest output gap %v (want ≥ 400 ms), %d out, %d stalled of 12", gap, len(outs), st.StalledSegments)
		}
	})
	t.Run("drop", func(t *testing.T) {
		rig := newLiveRig(t, LiveProfile{DropEvery: 3})
		rig.publish(9, 3)
		outs := rig.finish(6, 3*time.Second)
		nums := frameNumbers(outs)
		if len(outs) != 6 || len(nums) != 18 {
			t.Fatalf("%d segments, %d frames, want 6 segments (every 3rd of 9 dropped)", len(outs), len(nums))
		}
		for _, n := range nums {
			if seg := n/3 + 1; seg%3 == 0 {
				t.Fatalf("frame %d of dropped input segment %d came back", n, seg)
			}
		}
	})
	t.Run("passthrough", func(t *testing.T) {
		rig := newLiveRig(t, LiveProfile{Passthrough: true})
		rig.publish(3, 3)
		outs := rig.finish(3, 3*time.Second)
		if len(outs) != 3 {
			t.Fatalf("%d output segments, want 3", len(outs))
		}
		for _, o := range outs {
			for _, f := range o.frames {
				if f.Transformed || !f.Intact {
					t.Fatalf("passthrough frame %+v: want untransformed and intact", f)
				}
			}
		}
	})
	t.Run("no-output", func(t *testing.T) {
		rig := newLiveRig(t, LiveProfile{NoOutput: true, EventInterval: 50 * time.Millisecond})
		rig.publish(4, 3)
		outs := rig.finish(0, 300*time.Millisecond)
		if len(outs) != 0 {
			t.Fatalf("%d output segments, want none", len(outs))
		}
		if st := rig.runner.LiveStats(); st.InputSegments != 4 || st.Events == 0 {
			t.Errorf("stats %+v: input must be read and events published", st)
		}
	})
}

// The start route checks as ai-runner: 422 for a missing URL, 400 for the
// wrong model, 400 while a stream runs (one per runner); bad profiles are
// refused at New.
func TestLiveStartErrors(t *testing.T) {
	r, err := New(Config{Pipeline: "live-video-to-video", ModelID: "noop"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := r.Handler()
	for _, tc := range []struct {
		body string
		code int
		msg  string
	}{
		{`{"publish_url":"http://x/a-out","model_id":"noop"}`, 422, "subscribe_url"},
		{`{"subscribe_url":"http://x/a","publish_url":"http://x/a-out","model_id":"comfyui"}`, 400, "pipeline configured with noop but called with comfyui."},
		{`not json`, 422, "JSON decode error"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/live-video-to-video", strings.NewReader(tc.body)))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.msg) {
			t.Errorf("%s: %d %s, want %d %q", tc.body, rec.Code, rec.Body, tc.code, tc.msg)
		}
	}
	<-r.loaded
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	if !strings.Contains(rec.Body.String(), `"IDLE"`) {
		t.Errorf("/health of an idle live runner: %s", rec.Body)
	}
	if _, err := New(Config{Pipeline: "live-video-to-video", ModelID: "noop", Live: LiveProfile{Latency: -time.Second}}); err == nil {
		t.Error("negative latency accepted")
	}
}
