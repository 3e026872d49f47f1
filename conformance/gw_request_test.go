package conformance

import (
	"bytes"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Vector 01_infosig.json: the gateway's InfoSig is BcastSign(ascii(EIP-55
// address)) (cmd/livepeer/starter/starter.go:1685), the same bytes as
// go-livepeer's.
func TestGatewayInfoSig(t *testing.T) {
	var v struct {
		Message string `json:"message_ascii"`
		Keccak  string `json:"keccak256_message"`
		Digest  string `json:"eth_signed_message_hash"`
		Sig     string `json:"signature_r_s_v"`
	}
	gwJSON(t, "01_infosig.json", &v)
	s := gwSigner(t)
	if s.Address().Hex() != v.Message {
		t.Fatalf("signed message %q, go-livepeer signs %q", s.Address().Hex(), v.Message)
	}
	if got := crypto.Keccak256Hash([]byte(v.Message)).Hex(); got != v.Keccak {
		t.Fatalf("keccak %s, want %s", got, v.Keccak)
	}
	req, err := gateway.InfoRequest(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(req.GetSig(), common.FromHex(v.Sig)) {
		t.Fatalf("InfoSig\n got %x\nwant %s", req.GetSig(), v.Sig)
	}
}

// Vectors 01a and 01b: the OrchestratorRequest our gateway sends for one
// (capability, model) is the one go-livepeer's AI gateway sends
// (server/ai_session.go:446-460): DefaultCapabilities plus the pipeline bit,
// capacity 1 each, version, an empty minVersion, the model constraint
// {warm:false, runnerVersion:""}. Compared as decoded messages (a map is
// inside, go-livepeer's own bytes vary with map order) and as the
// deterministic bytes the vectors hold.
func TestGatewayOrchestratorRequest(t *testing.T) {
	for _, tt := range []struct {
		stem  string
		id    capability.ID
		model string
		bits  uint64
	}{
		{"01a_orchestrator_request_text_to_image", capability.TextToImage, gwT2IModel, 201351167},
		{"01b_orchestrator_request_llm", capability.LLM, gwLLMModel, 8657068031},
	} {
		t.Run(tt.stem, func(t *testing.T) {
			want := gwDecode(t, tt.stem, &lpnet.OrchestratorRequest{})
			got, err := gateway.OrchestratorRequest(gwSigner(t), tt.id, tt.model)
			if err != nil {
				t.Fatal(err)
			}
			gwSame(t, "OrchestratorRequest", want, got)
			if b := gwDeterministic(t, got); !bytes.Equal(b, gwBytes(t, tt.stem)) {
				t.Fatalf("bytes\n got %x\nwant %x", b, gwBytes(t, tt.stem))
			}
			if got.GetCapabilities().GetBitstring()[0] != tt.bits {
				t.Fatalf("bitstring %d, want %d", got.GetCapabilities().GetBitstring()[0], tt.bits)
			}
		})
	}
}

// Vector 01c: the no-capability discovery request (go-livepeer's on-chain
// DB discovery) is byte-identical: address and InfoSig, no field 3.
func TestGatewayDiscoveryRequestNoCaps(t *testing.T) {
	req, err := gateway.InfoRequest(gwSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if want := gwBytes(t, "01c_orchestrator_request_discovery_nocaps"); !bytes.Equal(b, want) {
		t.Fatalf("bytes\n got %x\nwant %x", b, want)
	}
}

// Vector 06: the Livepeer-Segment credentials of the text-to-image job
// (server/segment_rpc.go genSegCreds with the dummy segment): manifest id
// "27_ByteDance/SDXL-Lightning", seq 0, keccak256(""), profiles "invalid",
// the discovery caps of 01a, the auth token copied from OrchestratorInfo
// 02b, signed as BcastSign(Flatten()).
func TestGatewaySegData(t *testing.T) {
	var v struct {
		Flatten string `json:"flatten_hex"`
		Keccak  string `json:"keccak256_flatten"`
		Sig     string `json:"signature"`
	}
	gwJSON(t, "06_segdata_signing.json", &v)
	info := gwDecode(t, "02b_orchestrator_info_text_to_image", &lpnet.OrchestratorInfo{})
	sd, err := gateway.SegData(gwSigner(t), capability.TextToImage, gwT2IModel, info.GetAuthToken())
	if err != nil {
		t.Fatal(err)
	}
	if got := gateway.SegDataMessage(sd); !bytes.Equal(got, common.FromHex(v.Flatten)) {
		t.Fatalf("Flatten\n got %x\nwant %s", got, v.Flatten)
	}
	if got := crypto.Keccak256Hash(gateway.SegDataMessage(sd)).Hex(); got != v.Keccak {
		t.Fatalf("keccak(Flatten) %s, want %s", got, v.Keccak)
	}
	if !bytes.Equal(sd.GetSig(), common.FromHex(v.Sig)) {
		t.Fatalf("sig\n got %x\nwant %s", sd.GetSig(), v.Sig)
	}
	want := gwDecode(t, "06_segdata_text_to_image", &lpnet.SegData{})
	gwSame(t, "SegData", want, sd)
	if b := gwDeterministic(t, sd); !bytes.Equal(b, gwBytes(t, "06_segdata_text_to_image")) {
		t.Fatalf("bytes\n got %x\nwant %x", b, gwBytes(t, "06_segdata_text_to_image"))
	}
}
