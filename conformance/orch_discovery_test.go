package conformance

import (
	"context"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// TestOrchGetOrchestratorVectors: our orchestrator, configured with §0's
// keys, secrets, seed, chain and §2's aiModels, answers go-livepeer's AI
// gateway requests (01a, 01b) over gRPC with exactly the OrchestratorInfo
// go-livepeer's orchestrator sends (02b, 02c): capabilities, price,
// ticket params with recipientRandHash, auth token. With the text-to-image
// price at 0 it answers 01a with 05a (face value and win prob 0, params
// still sent). Decoded messages are compared, since map order makes the
// bytes unstable (README §0).
func TestOrchGetOrchestratorVectors(t *testing.T) {
	for _, tc := range []struct {
		req, want string
		t2iPrice  int64
	}{
		{"01a_orchestrator_request_text_to_image.hex", "02b_orchestrator_info_text_to_image.hex", vecPrice},
		{"01b_orchestrator_request_llm.hex", "02c_orchestrator_info_llm.hex", vecPrice},
		{"01a_orchestrator_request_text_to_image.hex", "05a_orchestrator_info_free.hex", 0},
	} {
		t.Run(tc.want, func(t *testing.T) {
			client, _ := serve(t, vecServer(t, 8_000_000_000, tc.t2iPrice), nil)
			req := vecMsg(t, tc.req, &lpnet.OrchestratorRequest{})
			got, err := client.GetOrchestrator(context.Background(), req)
			if err != nil {
				t.Fatalf("GetOrchestrator(%s): %v", tc.req, err)
			}
			want := vecMsg(t, tc.want, &lpnet.OrchestratorInfo{})
			if !proto.Equal(got, want) {
				t.Fatalf("OrchestratorInfo differs from go-livepeer's %s\ngot:  %s\nwant: %s", tc.want, pj(got), pj(want))
			}
			if !capability.CompatibleWith(req.GetCapabilities(), got.GetCapabilities()) {
				t.Error("go-livepeer's CompatibleWith rejects our capabilities for its own request")
			}
		})
	}
	// 02e: the recipientRand behind 02b's hash and the auth token.
	var e struct {
		Rand  string `json:"recipient_rand"`
		Token struct {
			Token string `json:"token"`
		} `json:"auth_token"`
	}
	if err := json.Unmarshal(vecFile(t, "02e_ticket_params_decoded.json"), &e); err != nil {
		t.Fatal(err)
	}
	info := vecMsg(t, "02b_orchestrator_info_text_to_image.hex", &lpnet.OrchestratorInfo{})
	rnd, _ := new(big.Int).SetString(strings.TrimPrefix(e.Rand, "0x"), 16)
	if pm.RandHash(rnd) != common.BytesToHash(info.GetTicketParams().GetRecipientRandHash()) {
		t.Error("02e's recipientRand does not hash to 02b's recipientRandHash")
	}
	if tok := vecReceiver(t, 8_000_000_000).Token(vecSessionID, vecExpiration); "0x"+common2hex(tok.GetToken()) != e.Token.Token {
		t.Errorf("auth token %x, go-livepeer %s", tok.GetToken(), e.Token.Token)
	}
}

// TestOrchCapabilitiesVectors: the advertised Capabilities are 02a, and
// with the capacity-2 llm run locally (no url) go-livepeer advertises
// capacity 1, 02d.
func TestOrchCapabilitiesVectors(t *testing.T) {
	s := vecServer(t, 8_000_000_000, vecPrice)
	if want := vecMsg(t, "02a_orchestrator_capabilities.hex", &lpnet.Capabilities{}); !proto.Equal(s.Capabilities(), want) {
		t.Errorf("capabilities differ from 02a\ngot:  %s\nwant: %s", pj(s.Capabilities()), pj(want))
	}
	s.Models = vecModels(t, `[{"pipeline":"text-to-image","model_id":"ByteDance/SDXL-Lightning","warm":true,"price_per_unit":4768371,"pixels_per_unit":1},
  {"pipeline":"llm","model_id":"meta-llama/Meta-Llama-3.1-8B-Instruct","warm":true,"capacity":2,"price_per_unit":4768371,"pixels_per_unit":1}]`)
	if want := vecMsg(t, "02d_orchestrator_capabilities_llm_local_capacity2.hex", &lpnet.Capabilities{}); !proto.Equal(s.Capabilities(), want) {
		t.Errorf("capabilities differ from 02d\ngot:  %s\nwant: %s", pj(s.Capabilities()), pj(want))
	}
}

// TestOrchDiscoveryNoCaps: go-livepeer's DB discovery request without
// capabilities (01c) is answered, not refused: transcoding base price
// (none configured: 0/1), one capabilities_prices entry per (capability,
// model), ticket params for that price, and the GPUs as hardware (§1c).
func TestOrchDiscoveryNoCaps(t *testing.T) {
	s := vecServer(t, 8_000_000_000, vecPrice)
	s.Hardware = func() []*lpnet.HardwareInformation {
		return lprpc.HardwareFromGPUs(s.States(), []gpu.GPU{{Index: 0, UUID: "GPU-1", Name: "NVIDIA H200", MemoryTotal: 150 << 30, MemoryFree: 140 << 30, ComputeMajor: 9}})
	}
	client, _ := serve(t, s, nil)
	info, err := client.GetOrchestrator(context.Background(), vecMsg(t, "01c_orchestrator_request_discovery_nocaps.hex", &lpnet.OrchestratorRequest{}))
	if err != nil {
		t.Fatalf("GetOrchestrator(01c): %v", err)
	}
	if p := info.GetPriceInfo(); p.GetPricePerUnit() != 0 || p.GetPixelsPerUnit() != 1 {
		t.Errorf("price_info %v, want go-livepeer's base price 0/1", p)
	}
	want := []*lpnet.PriceInfo{
		{PricePerUnit: vecPrice, PixelsPerUnit: 1, Capability: 27, Constraint: sdxl},
		{PricePerUnit: vecPrice, PixelsPerUnit: 1, Capability: 33, Constraint: llama},
	}
	if got := info.GetCapabilitiesPrices(); len(got) != len(want) || !proto.Equal(got[0], want[0]) || !proto.Equal(got[1], want[1]) {
		t.Errorf("capabilities_prices %v, want %v", got, want)
	}
	tp := info.GetTicketParams()
	if tp == nil || len(tp.GetFaceValue()) != 0 || len(tp.GetWinProb()) != 0 || len(tp.GetRecipientRandHash()) != 32 {
		t.Errorf("ticket params %v: want price-0 params (no face value or win prob, a rand hash)", tp)
	}
	if hw := info.GetHardware(); len(hw) != 2 || hw[0].GetGpuInfo()["0"].GetName() != "NVIDIA H200" {
		t.Errorf("hardware %v, want each model on the GPU", hw)
	}
	if !proto.Equal(info.GetCapabilities(), vecMsg(t, "02a_orchestrator_capabilities.hex", &lpnet.Capabilities{})) {
		t.Error("capabilities differ from 02a")
	}
	// A request with capabilities gets no hardware (rpc.go:636-639).
	withCaps, err := client.GetOrchestrator(context.Background(), vecMsg(t, "01a_orchestrator_request_text_to_image.hex", &lpnet.OrchestratorRequest{}))
	if err != nil || withCaps.GetHardware() != nil || withCaps.GetCapabilitiesPrices() != nil {
		t.Errorf("with capabilities: err %v, hardware %v, capabilities_prices %v", err, withCaps.GetHardware(), withCaps.GetCapabilitiesPrices())
	}
}

// TestOrchInfoSig: the InfoSig of 01 verifies (VerifySig of addr.Hex()),
// and the same request with a signature of anything else is refused.
func TestOrchInfoSig(t *testing.T) {
	var sig struct {
		Sig string `json:"signature_r_s_v"`
	}
	if err := json.Unmarshal(vecFile(t, "01_infosig.json"), &sig); err != nil {
		t.Fatal(err)
	}
	req := vecMsg(t, "01c_orchestrator_request_discovery_nocaps.hex", &lpnet.OrchestratorRequest{})
	if got := "0x" + common2hex(req.GetSig()); got != sig.Sig {
		t.Fatalf("01c carries sig %s, 01_infosig.json says %s", got, sig.Sig)
	}
	client, _ := serve(t, vecServer(t, 8_000_000_000, vecPrice), nil)
	bad := proto.Clone(req).(*lpnet.OrchestratorRequest)
	other, err := mustKey(t, vecGatewayKey).SignKeccak([]byte(vecGateway.Hex() + " "))
	if err != nil {
		t.Fatal(err)
	}
	bad.Sig = other
	if _, err := client.GetOrchestrator(context.Background(), bad); status.Code(err) != codes.PermissionDenied {
		t.Errorf("request signed over another string: %v, want PermissionDenied", err)
	}
	lower := proto.Clone(req).(*lpnet.OrchestratorRequest)
	lowerSig, _ := mustKey(t, vecGatewayKey).SignKeccak([]byte("0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a"))
	lower.Sig = lowerSig
	if _, err := client.GetOrchestrator(context.Background(), lower); status.Code(err) != codes.PermissionDenied {
		t.Errorf("request signed over the lower-case address: %v; go-livepeer signs the EIP-55 form only", err)
	}
}

func common2hex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestOrchCompatibleWithTable: every row of go-livepeer's CompatibleWith
// table (03) gets go-livepeer's verdict from capability.CompatibleWith,
// the check our orchestrator applies to each job's SegData.
func TestOrchCompatibleWithTable(t *testing.T) {
	var rows []struct {
		Case    string          `json:"case"`
		Gateway json.RawMessage `json:"gateway_capabilities"`
		Orch    json.RawMessage `json:"orchestrator_capabilities"`
		Want    bool            `json:"CompatibleWith"`
	}
	if err := json.Unmarshal(vecFile(t, "03_compatible_with.json"), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("empty table")
	}
	for _, r := range rows {
		var gw, orch lpnet.Capabilities
		if err := protojson.Unmarshal(r.Gateway, &gw); err != nil {
			t.Fatal(err)
		}
		if err := protojson.Unmarshal(r.Orch, &orch); err != nil {
			t.Fatal(err)
		}
		if got := capability.CompatibleWith(&gw, &orch); got != r.Want {
			t.Errorf("%s: %v, go-livepeer says %v", r.Case, got, r.Want)
		}
	}
}

// TestOrchPingAndEndSession: Ping answers 08a with go-livepeer's 08b
// (BcastSign of the value by the orchestrator key, byte-identical: RFC 6979
// signatures are deterministic), which verifies against the orchestrator's
// address; EndTranscodingSession accepts 08c's token and refuses a forged one.
func TestOrchPingAndEndSession(t *testing.T) {
	client, _ := serve(t, vecServer(t, 8_000_000_000, vecPrice), nil)
	ping := vecMsg(t, "08a_ping_request.hex", &lpnet.PingPong{})
	if want := crypto.Keccak256([]byte("golden ping")); string(ping.GetValue()) != string(want) {
		t.Fatal("08a value is not keccak256(\"golden ping\")")
	}
	pong, err := client.Ping(context.Background(), ping)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	gotBytes, _ := proto.Marshal(pong)
	if want := vecFile(t, "08b_ping_response.hex"); common2hex(gotBytes) != string(trim(want)) {
		t.Errorf("Pong bytes %x, go-livepeer's %s", gotBytes, trim(want))
	}
	if err := pm.VerifyKeccak(vecOrch, ping.GetValue(), pong.GetValue()); err != nil {
		t.Errorf("Pong does not verify against the orchestrator: %v", err)
	}

	end := vecMsg(t, "08c_end_transcoding_session_request.hex", &lpnet.EndTranscodingSessionRequest{})
	if _, err := client.EndTranscodingSession(context.Background(), end); err != nil {
		t.Errorf("EndTranscodingSession(08c): %v", err)
	}
	forged := proto.Clone(end).(*lpnet.EndTranscodingSessionRequest)
	forged.AuthToken.Expiration++
	if _, err := client.EndTranscodingSession(context.Background(), forged); status.Code(err) != codes.PermissionDenied {
		t.Errorf("forged token: %v, want PermissionDenied (Invalid auth token)", err)
	}
}

func trim(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
