// Package orchtest serves fake AI orchestrators for the tester's tests: real
// HTTP servers (httptest) that speak the orchestrator's AI endpoints the way
// the reference orchestrator does (JSON in, media as absolute /stream URLs
// when the Livepeer-AI-Worker-1.0 marker is sent, X-Processing-Time-Ms) with
// behaviour a test controls exactly: injected delays, errors, wrong outputs.
package orchtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/media/pngfile"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Behaviour says how the fake answers.
type Behaviour struct {
	// Offers are the pipeline:model pairs advertised to a GetOrchestrator
	// that asks for no capability (full info). A request for one
	// (capability, model) is always answered as offered, warm, so a test
	// can probe any model over the Livepeer protocol.
	Offers     []string
	Delay      time.Duration // server time: sleep before answering
	Status     int           // answer this status with Body instead of working (0: work)
	Body       string        // body for Status
	WrongSize  bool          // return images 8 px narrower than asked
	ExtraImage bool          // return one image more than asked
	Handler    http.Handler  // replaces everything (hostile behaviours)
	// FailRate in (0,1] answers that share of jobs with a 500 (a failure
	// profile for benchmarks). Which jobs fail is decided per job from its
	// seed alone (Fails), never from a count of requests received: the
	// tester derives the seed from the probe id, so a probe's fate does not
	// depend on which other probes reached this orchestrator first (a probe
	// lost to the tester's own fault would otherwise shift every later
	// decision), and a benchmark can tell from a row's probe id what the
	// orchestrator decided.
	FailRate float64
	// ClaimAddress, when set, is the address GetOrchestrator reports
	// instead of the fake's own: an orchestrator naming someone else's
	// address. Ping still signs with the fake's own key, as it must.
	ClaimAddress string
	// Unsigned answers Ping with no signature, as an off-chain go-livepeer
	// orchestrator does.
	Unsigned bool
}

// Fails is the injected decision for a job with this seed under failure
// rate rate: a uniform hash of the seed (splitmix64's finaliser) below
// rate. Deterministic per probe, so a benchmark's truth can be the injected
// profile evaluated on exactly the probes it ran.
func Fails(seed int64, rate float64) bool {
	if rate <= 0 {
		return false
	}
	z := uint64(seed) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11)/(1<<53) < rate
}

// Orch is one fake orchestrator.
type Orch struct {
	*httptest.Server
	Address string
	b       Behaviour
	base    string // URL, readable from handlers without racing Start
	mu      sync.Mutex
	media   map[string][]byte
	offers  []string // Behaviour.Offers, changed by SetOffers; under mu
	Calls   atomic.Int64
	// Discoveries counts GetOrchestrator calls.
	Discoveries atomic.Int64
	served      []time.Duration // under mu: each answered job's actual server time
	extra       atomic.Int64    // SetExtraDelay, ns
	signer      *pm.Signer      // the key of Address, for Ping
}

// SetExtraDelay adds d to the server time of the jobs that start from now
// (0 to stop): an orchestrator that turns slow for a while.
func (o *Orch) SetExtraDelay(d time.Duration) { o.extra.Store(int64(d)) }

// ServedTimes are the server times this fake actually spent on each job it
// answered, in order: request read → about to write the response. Under CPU
// load a sleep overshoots its Delay, so benchmarks compare the tester's
// measurement with this as well as with the injected Delay.
func (o *Orch) ServedTimes() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Duration(nil), o.served...)
}

// New starts a fake orchestrator closed when the test ends.
func New(t testing.TB, b Behaviour) *Orch {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer := pm.NewSigner(key)
	o := &Orch{b: b, media: map[string][]byte{}, offers: b.Offers, Address: strings.ToLower(signer.Address().Hex()), signer: signer}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /text-to-image", o.textToImage)
	mux.HandleFunc("GET /stream/", o.stream)
	var h http.Handler = mux
	if b.Handler != nil {
		h = b.Handler
	}
	// GetOrchestrator shares the port over h2c, as on the reference
	// orchestrator, hostile HTTP behaviours included.
	h = h2c.NewHandler(lprpc.Handler(lprpc.NewGRPC(&discoveryServer{o: o}), h), &http2.Server{})
	o.Server = httptest.NewUnstartedServer(h)
	// Handlers read base; set it before Start so they never race the test.
	o.base = "http://" + o.Server.Listener.Addr().String()
	o.Server.Start()
	t.Cleanup(o.Server.Close)
	return o
}

// RandomAddress returns a random 0x address.
func RandomAddress() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return "0x" + hex.EncodeToString(b[:])
}

// Target renders the orchestrator as an -orchestrators entry.
func (o *Orch) Target() string { return o.Address + "=" + o.URL }

// begin marks the moment the request was read; finish sleeps until Delay
// after it, so the injected delay is the server time (request received →
// first response byte) however long producing the output took.
func (o *Orch) begin() time.Time {
	o.Calls.Add(1)
	return time.Now()
}

func (o *Orch) finish(w http.ResponseWriter, r *http.Request, start time.Time, seed int64) bool {
	if wait := o.b.Delay + time.Duration(o.extra.Load()) - time.Since(start); wait > 0 {
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return false
		}
	}
	took := time.Since(start)
	o.mu.Lock()
	o.served = append(o.served, took)
	o.mu.Unlock()
	w.Header().Set("X-Processing-Time-Ms", strconv.FormatInt(took.Milliseconds(), 10))
	if Fails(seed, o.b.FailRate) {
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return false
	}
	if o.b.Status != 0 {
		http.Error(w, o.b.Body, o.b.Status)
		return false
	}
	return true
}

func (o *Orch) store(b []byte, ext string) string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	path := "/stream/" + hex.EncodeToString(id[:]) + "/0." + ext
	o.mu.Lock()
	o.media[path] = b
	o.mu.Unlock()
	return o.base + path
}

func (o *Orch) textToImage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Width, Height int
		N             int `json:"num_images_per_prompt"`
		Seed          int64
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Width <= 0 || req.Height <= 0 {
		http.Error(w, fmt.Sprintf("bad request: %v", err), http.StatusBadRequest)
		return
	}
	start := o.begin()
	if req.N <= 0 {
		req.N = 1
	}
	if o.b.ExtraImage {
		req.N++
	}
	if o.b.WrongSize {
		req.Width -= 8
	}
	type media struct {
		URL  string `json:"url"`
		Seed int64  `json:"seed"`
		NSFW bool   `json:"nsfw"`
	}
	var out struct {
		Images []media `json:"images"`
	}
	for i := 0; i < req.N; i++ {
		out.Images = append(out.Images, media{URL: o.store(cachedPNG(req.Width, req.Height), "png"), Seed: req.Seed + int64(i)})
	}
	if o.finish(w, r, start, req.Seed) {
		writeJSON(w, out)
	}
}

func (o *Orch) stream(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	b, ok := o.media[r.URL.Path]
	o.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

var pngs sync.Map // [2]int → []byte: rendering is the fakes' main CPU cost

// cachedPNG keeps the fakes cheap so that, on a small shared CI machine,
// their CPU use does not leak into the timings under test.
func cachedPNG(w, h int) []byte {
	if b, ok := pngs.Load([2]int{w, h}); ok {
		return b.([]byte)
	}
	b := pngfile.Gradient(w, h, 1)
	pngs.Store([2]int{w, h}, b)
	return b
}

// SetOffers changes what the orchestrator advertises from now on, as an
// operator adding or dropping a model does.
func (o *Orch) SetOffers(offers ...string) {
	o.mu.Lock()
	o.offers = offers
	o.mu.Unlock()
}

// claimed is the address GetOrchestrator reports.
func (o *Orch) claimed() string {
	if o.b.ClaimAddress != "" {
		return o.b.ClaimAddress
	}
	return o.Address
}

// Ping signs the value as go-livepeer's orchestrator does (server/rpc.go:
// 380-388): personal-sign of keccak256(value) with the fake's own key.
func (d *discoveryServer) Ping(_ context.Context, req *lpnet.PingPong) (*lpnet.PingPong, error) {
	if d.o.b.Unsigned {
		return &lpnet.PingPong{Value: []byte{}}, nil
	}
	sig, err := d.o.signer.SignKeccak(req.GetValue())
	if err != nil {
		return nil, err
	}
	return &lpnet.PingPong{Value: sig}, nil
}

// discoveryServer answers GetOrchestrator as an off-chain orchestrator:
// price 0, no ticket params, an auth token the fake does not check.
type discoveryServer struct {
	lpnet.UnimplementedOrchestratorServer
	o *Orch
}

func (d *discoveryServer) GetOrchestrator(_ context.Context, req *lpnet.OrchestratorRequest) (*lpnet.OrchestratorInfo, error) {
	d.o.Discoveries.Add(1)
	offers := map[capability.ID][]string{}
	for id, cc := range req.GetCapabilities().GetConstraints().GetPerCapability() {
		for m := range cc.GetModels() {
			offers[capability.ID(id)] = append(offers[capability.ID(id)], m)
		}
	}
	if len(offers) == 0 {
		d.o.mu.Lock()
		advertised := d.o.offers
		d.o.mu.Unlock()
		for _, o := range advertised {
			slug, m, _ := strings.Cut(o, ":")
			if p, ok := capability.BySlug(slug); ok {
				offers[p.ID] = append(offers[p.ID], m)
			}
		}
	}
	var ids []capability.ID
	per := map[uint32]*lpnet.Capabilities_CapabilityConstraints{}
	for id, ms := range offers {
		ids = append(ids, id)
		cc := &lpnet.Capabilities_CapabilityConstraints{Models: map[string]*lpnet.Capabilities_CapabilityConstraints_ModelConstraint{}}
		for _, m := range ms {
			cc.Models[m] = &lpnet.Capabilities_CapabilityConstraints_ModelConstraint{Warm: true, Capacity: 1}
		}
		per[uint32(id)] = cc
	}
	return &lpnet.OrchestratorInfo{
		Transcoder: d.o.base,
		Address:    common.HexToAddress(d.o.claimed()).Bytes(),
		Capabilities: &lpnet.Capabilities{
			Bitstring:   capability.Bitstring(ids...),
			Version:     "orchtest",
			Constraints: &lpnet.Capabilities_Constraints{PerCapability: per},
		},
		PriceInfo: &lpnet.PriceInfo{PixelsPerUnit: 1},
		AuthToken: &lpnet.AuthToken{Token: []byte("orchtest"), SessionId: "orchtest", Expiration: time.Now().Add(30 * time.Minute).Unix()},
	}, nil
}
