package conformance

import (
	"context"
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
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/media/pngfile"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
	"github.com/lpgauge/lpgauge/tester/preparer"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// gwOrch is an orchestrator as a go-livepeer gateway meets it, on real
// servers: GetOrchestrator (gRPC over h2c) on its discovery (service) URI,
// and the AI routes on the transcoder URI it advertises, which may be
// another host. Result media are absolute URLs on the transcoder's host, as
// go-livepeer's orchestrator writes them. With check set, a job whose
// headers a go-livepeer orchestrator would refuse is refused with its
// status (server/ai_http.go:1380-1392).
type gwOrch struct {
	lpnet.UnimplementedOrchestratorServer

	discovery, transcoder *httptest.Server
	// info is what GetOrchestrator answers (Transcoder filled in).
	mu   sync.Mutex
	info *lpnet.OrchestratorInfo

	check                 func(r *http.Request) (int, error)
	discoveries           atomic.Int64
	jobsAtDiscovery       atomic.Int64
	jobsAtTranscoder      atomic.Int64
	refusals              atomic.Int64
	separateTranscoderURI bool
	advertise             string // replaces the advertised transcoder URI when set
}

// newGWOrch starts the orchestrator. With separate, the transcoder URI is a
// second server; its discovery server then answers the AI routes too (a
// proxy in front of the same workers), so a gateway that sends the job to
// the discovery URI gets media on the transcoder's host.
// Options set before the servers start, so handlers read them race-free.
func newGWOrch(t *testing.T, info *lpnet.OrchestratorInfo, separate bool, opts ...func(*gwOrch)) *gwOrch {
	t.Helper()
	o := &gwOrch{info: info, separateTranscoderURI: separate}
	for _, f := range opts {
		f(o)
	}
	o.discovery = httptest.NewUnstartedServer(h2c.NewHandler(lprpc.Handler(lprpc.NewGRPC(o), o.jobs(&o.jobsAtDiscovery)), &http2.Server{}))
	o.transcoder = o.discovery
	if separate {
		o.transcoder = httptest.NewUnstartedServer(o.jobs(&o.jobsAtTranscoder))
		o.transcoder.Start()
		t.Cleanup(o.transcoder.Close)
	}
	o.discovery.Start()
	t.Cleanup(o.discovery.Close)
	return o
}

func (o *gwOrch) setInfo(info *lpnet.OrchestratorInfo) {
	o.mu.Lock()
	o.info = info
	o.mu.Unlock()
}

func (o *gwOrch) GetOrchestrator(context.Context, *lpnet.OrchestratorRequest) (*lpnet.OrchestratorInfo, error) {
	o.discoveries.Add(1)
	o.mu.Lock()
	info := proto.Clone(o.info).(*lpnet.OrchestratorInfo)
	o.mu.Unlock()
	info.Transcoder = o.transcoder.URL
	if o.advertise != "" {
		info.Transcoder = o.advertise
	}
	return info, nil
}

func (o *gwOrch) jobs(count *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /text-to-image", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		if !o.separateTranscoderURI {
			o.jobsAtTranscoder.Add(1)
		}
		if o.check != nil {
			if status, err := o.check(r); err != nil {
				o.refusals.Add(1)
				http.Error(w, err.Error(), status)
				return
			}
		}
		var req struct {
			Width, Height int
			N             int `json:"num_images_per_prompt"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type image struct {
			URL string `json:"url"`
		}
		var out struct {
			Images []image `json:"images"`
		}
		for i := 0; i < max(req.N, 1); i++ {
			out.Images = append(out.Images, image{URL: fmt.Sprintf("%s/stream/%d/%dx%d.png", o.transcoder.URL, i, req.Width, req.Height)})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /stream/{i}/{size}", func(w http.ResponseWriter, r *http.Request) {
		ws, hs, _ := strings.Cut(strings.TrimSuffix(r.PathValue("size"), ".png"), "x")
		width, _ := strconv.Atoi(ws)
		height, _ := strconv.Atoi(hs)
		if width <= 0 || height <= 0 {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(pngfile.Gradient(width, height, 1))
	})
	return mux
}

// gwProbe runs one text-to-image probe of o through the tester's prober and
// the Livepeer preparer, as a tester round does.
func gwProbe(t *testing.T, g *gateway.Gateway, o *gwOrch, orchAddr string) results.Result {
	t.Helper()
	p := probe.New(probe.Config{Preparer: preparer.Preparer{Gateway: g}, Timeouts: probe.Timeouts{Total: 30 * time.Second}})
	return p.Run(context.Background(), probe.Job{
		Orchestrator: orchAddr, ServiceURI: o.discovery.URL, Pipeline: probe.TextToImage{}, Model: gwT2IModel, Seed: 3,
	})
}

func gwSucceeded(t *testing.T, r results.Result) {
	t.Helper()
	if r.Outcome != results.Success {
		t.Fatalf("probe recorded %s %s/%s: %s", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
}

// §8.1: an orchestrator whose advertised transcoder URI differs from its
// discovery (service) URI. The job goes to OrchestratorInfo.transcoder, as
// a go-livepeer gateway sends it (server/ai_process.go:204), media on that
// host are the orchestrator's own, and the probe records success.
// GetOrchestrator stays on the discovery URI. Today's main sent the job to
// the discovery URI and failed it as invalid_output/media_foreign_host.
func TestTesterJobGoesToAdvertisedTranscoder(t *testing.T) {
	info := gwInfo(t, "02b_orchestrator_info_text_to_image")
	o := newGWOrch(t, info, true)
	orch := common.BytesToAddress(info.GetAddress()).Hex()
	for _, tc := range []struct {
		name string
		g    *gateway.Gateway
	}{
		{"off chain", &gateway.Gateway{}},
		{"on chain", gwGateway(t, newGWChain())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := o.jobsAtTranscoder.Load()
			r := gwProbe(t, tc.g, o, orch)
			gwSucceeded(t, r)
			if o.jobsAtDiscovery.Load() != 0 || o.jobsAtTranscoder.Load() != before+1 {
				t.Fatalf("jobs at discovery URI %d, at transcoder URI %d: want 0 and %d", o.jobsAtDiscovery.Load(),
					o.jobsAtTranscoder.Load(), before+1)
			}
			if r.ServiceURI != o.discovery.URL {
				t.Fatalf("result service_uri %q, want the discovery URI %q", r.ServiceURI, o.discovery.URL)
			}
		})
	}
	if o.discoveries.Load() != 2 {
		t.Fatalf("%d GetOrchestrator calls on the discovery URI, want 2", o.discoveries.Load())
	}
}

// An advertised transcoder URI the job cannot be sent to is the
// orchestrator's discovery fault, named, and nothing is sent anywhere.
func TestTesterBadTranscoderURI(t *testing.T) {
	info := gwInfo(t, "02b_orchestrator_info_text_to_image")
	o := newGWOrch(t, info, false, func(o *gwOrch) { o.advertise = "ftp://orchestrator.example:8935" })
	r := gwProbe(t, &gateway.Gateway{}, o, common.BytesToAddress(info.GetAddress()).Hex())
	if r.Outcome != results.Failure || r.ErrorClass != string(probe.ClassDiscovery) || r.ErrorCode != "bad_transcoder_uri" {
		t.Fatalf("probe recorded %s %s/%s (%s), want failure discovery/bad_transcoder_uri", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	if o.jobsAtDiscovery.Load() != 0 {
		t.Fatal("the job was sent to the discovery URI")
	}
}

// §5: a free model (price 0; ticket params with face value and win
// probability 0, vector 05a) probed by an on-chain tester. The orchestrator
// here checks the headers as go-livepeer's does: a Livepeer-Payment that
// decodes, carries the gateway as sender and the advertised price; a
// Livepeer-Segment signed by that sender with the auth token echoed. The
// probe records success. Today's main failed it as
// payment/ticket_params_invalid before sending anything.
func TestTesterFreeModelSucceeds(t *testing.T) {
	info := gwInfo(t, "05a_orchestrator_info_free")
	gw := common.HexToAddress(gwAddressHex)
	check := func(r *http.Request) (int, error) {
		var pay lpnet.Payment
		if err := pm.DecodeHeader(r.Header.Get(gateway.PaymentHeader), &pay); err != nil {
			return http.StatusPaymentRequired, err
		}
		if common.BytesToAddress(pay.GetSender()) != gw || len(pay.GetTicketSenderParams()) != 0 || pay.GetTicketParams() != nil {
			return http.StatusBadRequest, fmt.Errorf("payment: sender %x, %d tickets", pay.GetSender(), len(pay.GetTicketSenderParams()))
		}
		if !proto.Equal(pay.GetExpectedPrice(), info.GetPriceInfo()) {
			return http.StatusBadRequest, fmt.Errorf("expected price %v, advertised %v", pay.GetExpectedPrice(), info.GetPriceInfo())
		}
		var sd lpnet.SegData
		if err := pm.DecodeHeader(r.Header.Get(gateway.SegmentHeader), &sd); err != nil {
			return http.StatusForbidden, err
		}
		if err := pm.VerifyKeccak(common.BytesToAddress(pay.GetSender()), gateway.SegDataMessage(&sd), sd.GetSig()); err != nil {
			return http.StatusForbidden, err
		}
		if !proto.Equal(sd.GetAuthToken(), info.GetAuthToken()) {
			return http.StatusForbidden, fmt.Errorf("auth token not echoed")
		}
		if r.Header.Get("Authorization") != gateway.AuthorizationValue {
			return http.StatusUnauthorized, fmt.Errorf("authorization %q", r.Header.Get("Authorization"))
		}
		return 0, nil
	}
	o := newGWOrch(t, info, false, func(o *gwOrch) { o.check = check })
	chain := newGWChain()
	r := gwProbe(t, gwGateway(t, chain), o, common.BytesToAddress(info.GetAddress()).Hex())
	gwSucceeded(t, r)
	if o.jobsAtTranscoder.Load() != 1 || o.refusals.Load() != 0 {
		t.Fatalf("%d jobs, %d refused: want 1 accepted", o.jobsAtTranscoder.Load(), o.refusals.Load())
	}
}

// §8.3: a session is reused until now > auth token expiration − 180 s, then
// refreshed with GetOrchestrator (server/broadcast.go:1637-1644). Today's
// main refreshed in the last 10% of the time from fetch to expiry, so a
// token fetched 170 s before expiry was reused.
func TestGatewayAuthTokenRefresh(t *testing.T) {
	info := gwInfo(t, "02b_orchestrator_info_text_to_image")
	o := newGWOrch(t, info, false)
	ctx := context.Background()
	for _, tt := range []struct {
		left    time.Duration
		refresh bool
	}{
		{200 * time.Second, false},
		{170 * time.Second, true},
	} {
		t.Run(tt.left.String(), func(t *testing.T) {
			i := proto.Clone(info).(*lpnet.OrchestratorInfo)
			i.AuthToken.Expiration = time.Now().Add(tt.left).Unix()
			o.setInfo(i)
			g := &gateway.Gateway{ReuseSessions: true}
			if _, err := g.Session(ctx, o.discovery.URL, capability.TextToImage, gwT2IModel); err != nil {
				t.Fatal(err)
			}
			s, err := g.Session(ctx, o.discovery.URL, capability.TextToImage, gwT2IModel)
			if err != nil {
				t.Fatal(err)
			}
			if s.Reused == tt.refresh {
				t.Fatalf("token %s from expiry: reused %v, want %v", tt.left, s.Reused, !tt.refresh)
			}
		})
	}
}

// §8.4: a session's ticket params are refreshed when expirationBlock −
// lastSeenL1Block ≤ 1 (pm/sender.go:194-197; server/broadcast.go:1646-1655);
// with 2 blocks left they are reused.
func TestGatewayTicketParamsRefresh(t *testing.T) {
	info := gwInfo(t, "02b_orchestrator_info_text_to_image") // expiration block 21000040
	o := newGWOrch(t, info, false)
	ctx := context.Background()
	chain := newGWChain()
	g := gwGateway(t, chain)
	g.ReuseSessions = true
	if _, err := g.Session(ctx, o.discovery.URL, capability.TextToImage, gwT2IModel); err != nil {
		t.Fatal(err)
	}
	chain.setBlock(21000038)
	if s, err := g.Session(ctx, o.discovery.URL, capability.TextToImage, gwT2IModel); err != nil || !s.Reused {
		t.Fatalf("2 blocks left: reused %v (%v), want reused", s.Reused, err)
	}
	chain.setBlock(21000039)
	fresh := proto.Clone(info).(*lpnet.OrchestratorInfo)
	fresh.TicketParams.ExpirationBlock = big21000079
	o.setInfo(fresh)
	s, err := g.Session(ctx, o.discovery.URL, capability.TextToImage, gwT2IModel)
	if err != nil || s.Reused {
		t.Fatalf("1 block left: reused %v (%v), want refreshed", s.Reused, err)
	}
	if got := s.Info.GetTicketParams().GetExpirationBlock(); string(got) != string(big21000079) {
		t.Fatalf("refreshed params expire at %x", got)
	}
}

var big21000079 = []byte{0x01, 0x40, 0x6f, 0x8f} // 21000079 = 0x01406f8f
