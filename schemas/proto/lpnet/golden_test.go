package lpnet_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

var update = flag.Bool("update", false, "rewrite golden files")

func goldenOrchestratorInfo() *lpnet.OrchestratorInfo {
	return &lpnet.OrchestratorInfo{
		Transcoder: "https://127.0.0.1:8935",
		TicketParams: &lpnet.TicketParams{
			Recipient:         bytes.Repeat([]byte{0x11}, 20),
			FaceValue:         []byte{0x03, 0xe8},
			WinProb:           []byte{0x7f, 0xff},
			RecipientRandHash: bytes.Repeat([]byte{0x22}, 32),
			Seed:              bytes.Repeat([]byte{0x33}, 32),
			ExpirationBlock:   []byte{0x64},
			ExpirationParams:  &lpnet.TicketExpirationParams{CreationRound: 5, CreationRoundBlockHash: bytes.Repeat([]byte{0x44}, 32)},
		},
		PriceInfo: &lpnet.PriceInfo{PricePerUnit: 1200, PixelsPerUnit: 1, Capability: 27, Constraint: "ByteDance/SDXL-Lightning"},
		Address:   bytes.Repeat([]byte{0x11}, 20),
		Capabilities: &lpnet.Capabilities{
			Bitstring: []uint64{1 << 27},
			Version:   "0.8.0",
			Constraints: &lpnet.Capabilities_Constraints{
				PerCapability: map[uint32]*lpnet.Capabilities_CapabilityConstraints{
					27: {Models: map[string]*lpnet.Capabilities_CapabilityConstraints_ModelConstraint{
						"ByteDance/SDXL-Lightning": {Warm: true, Capacity: 2, RunnerVersion: "0.14.1", CapacityInUse: 1},
					}},
				},
			},
		},
		AuthToken: &lpnet.AuthToken{Token: bytes.Repeat([]byte{0x55}, 32), SessionId: "sess", Expiration: 1700000000},
		Hardware: []*lpnet.HardwareInformation{{
			Pipeline: "text-to-image", ModelId: "ByteDance/SDXL-Lightning",
			GpuInfo: map[string]*lpnet.GPUComputeInfo{"0": {Id: "GPU-0", Name: "H100", Major: 9, Minor: 0, MemoryFree: 1, MemoryTotal: 2}},
		}},
		CapabilitiesPrices: []*lpnet.PriceInfo{{PricePerUnit: 1200, PixelsPerUnit: 1, Capability: 27, Constraint: "ByteDance/SDXL-Lightning"}},
	}
}

func goldenPayment() *lpnet.Payment {
	oi := goldenOrchestratorInfo()
	return &lpnet.Payment{
		TicketParams:     oi.TicketParams,
		Sender:           bytes.Repeat([]byte{0x66}, 20),
		ExpirationParams: oi.TicketParams.ExpirationParams,
		TicketSenderParams: []*lpnet.TicketSenderParams{
			{SenderNonce: 1, Sig: bytes.Repeat([]byte{0x77}, 65)},
			{SenderNonce: 2, Sig: bytes.Repeat([]byte{0x88}, 65)},
		},
		ExpectedPrice: oi.PriceInfo,
	}
}

// field is one decoded protobuf field.
type field struct {
	num protowire.Number
	typ protowire.Type
	raw []byte // length-delimited payload
	v   uint64 // varint value
}

func decode(t *testing.T, b []byte) []field {
	t.Helper()
	var fs []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.raw, n = protowire.ConsumeBytes(b)
		default:
			t.Fatalf("field %d: unexpected wire type %d", num, typ)
		}
		if n < 0 {
			t.Fatalf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		fs = append(fs, f)
	}
	return fs
}

// one returns the single field numbered num and checks its wire type.
func one(t *testing.T, fs []field, num protowire.Number, typ protowire.Type) field {
	t.Helper()
	var found []field
	for _, f := range fs {
		if f.num == num {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("field %d: found %d times, want 1", num, len(found))
	}
	if found[0].typ != typ {
		t.Fatalf("field %d: wire type %d, want %d", num, found[0].typ, typ)
	}
	return found[0]
}

func all(fs []field, num protowire.Number) []field {
	var out []field
	for _, f := range fs {
		if f.num == num {
			out = append(out, f)
		}
	}
	return out
}

func golden(t *testing.T, name string, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("%s: encoding changed:\n got %x\nwant %x", name, b, want)
	}
	return want
}

const (
	varint = protowire.VarintType
	lenDel = protowire.BytesType
)

func checkPriceInfo(t *testing.T, b []byte) {
	t.Helper()
	fs := decode(t, b)
	if v := one(t, fs, 1, varint).v; v != 1200 {
		t.Errorf("pricePerUnit = %d", v)
	}
	if v := one(t, fs, 2, varint).v; v != 1 {
		t.Errorf("pixelsPerUnit = %d", v)
	}
	if v := one(t, fs, 3, varint).v; v != 27 {
		t.Errorf("capability = %d", v)
	}
	if s := string(one(t, fs, 4, lenDel).raw); s != "ByteDance/SDXL-Lightning" {
		t.Errorf("constraint = %q", s)
	}
}

func checkTicketParams(t *testing.T, b []byte) {
	t.Helper()
	fs := decode(t, b)
	wantLen := map[protowire.Number]int{1: 20, 2: 2, 3: 2, 4: 32, 5: 32, 6: 1}
	for num, n := range wantLen {
		if got := len(one(t, fs, num, lenDel).raw); got != n {
			t.Errorf("ticket params field %d: %d bytes, want %d", num, got, n)
		}
	}
	exp := decode(t, one(t, fs, 7, lenDel).raw)
	if v := one(t, exp, 1, varint).v; v != 5 {
		t.Errorf("creation_round = %d", v)
	}
	if n := len(one(t, exp, 2, lenDel).raw); n != 32 {
		t.Errorf("creation_round_block_hash %d bytes", n)
	}
}

func TestGoldenOrchestratorInfo(t *testing.T) {
	b := golden(t, "orchestrator_info.bin", goldenOrchestratorInfo())
	fs := decode(t, b)
	if s := string(one(t, fs, 1, lenDel).raw); s != "https://127.0.0.1:8935" {
		t.Errorf("transcoder = %q", s)
	}
	checkTicketParams(t, one(t, fs, 2, lenDel).raw)
	checkPriceInfo(t, one(t, fs, 3, lenDel).raw)
	if n := len(one(t, fs, 4, lenDel).raw); n != 20 {
		t.Errorf("address %d bytes", n)
	}

	caps := decode(t, one(t, fs, 5, lenDel).raw)
	packed := one(t, caps, 1, lenDel).raw // repeated uint64 bitstring, packed
	word, n := protowire.ConsumeVarint(packed)
	if n != len(packed) || word != 1<<27 {
		t.Errorf("bitstring = %x", packed)
	}
	if s := string(one(t, caps, 4, lenDel).raw); s != "0.8.0" {
		t.Errorf("version = %q", s)
	}
	constraints := decode(t, one(t, caps, 5, lenDel).raw)
	entry := decode(t, one(t, constraints, 2, lenDel).raw) // PerCapability map entry
	if k := one(t, entry, 1, varint).v; k != 27 {
		t.Errorf("PerCapability key = %d", k)
	}
	capCons := decode(t, one(t, entry, 2, lenDel).raw)
	modelEntry := decode(t, one(t, capCons, 1, lenDel).raw) // models map entry
	if k := string(one(t, modelEntry, 1, lenDel).raw); k != "ByteDance/SDXL-Lightning" {
		t.Errorf("models key = %q", k)
	}
	mc := decode(t, one(t, modelEntry, 2, lenDel).raw)
	if one(t, mc, 1, varint).v != 1 || one(t, mc, 2, varint).v != 2 ||
		string(one(t, mc, 3, lenDel).raw) != "0.14.1" || one(t, mc, 4, varint).v != 1 {
		t.Errorf("ModelConstraint fields wrong: %+v", mc)
	}

	auth := decode(t, one(t, fs, 6, lenDel).raw)
	if len(one(t, auth, 1, lenDel).raw) != 32 || string(one(t, auth, 2, lenDel).raw) != "sess" || one(t, auth, 3, varint).v != 1700000000 {
		t.Errorf("AuthToken fields wrong: %+v", auth)
	}

	hw := decode(t, one(t, fs, 7, lenDel).raw)
	if string(one(t, hw, 1, lenDel).raw) != "text-to-image" || string(one(t, hw, 2, lenDel).raw) != "ByteDance/SDXL-Lightning" {
		t.Errorf("HardwareInformation fields wrong")
	}
	gpuEntry := decode(t, one(t, hw, 3, lenDel).raw)
	gpu := decode(t, one(t, gpuEntry, 2, lenDel).raw)
	if string(one(t, gpu, 1, lenDel).raw) != "GPU-0" || string(one(t, gpu, 2, lenDel).raw) != "H100" ||
		one(t, gpu, 4, varint).v != 9 || one(t, gpu, 6, varint).v != 1 || one(t, gpu, 7, varint).v != 2 {
		t.Errorf("GPUComputeInfo fields wrong: %+v", gpu)
	}
	checkPriceInfo(t, one(t, fs, 33, lenDel).raw)
}

func TestGoldenPayment(t *testing.T) {
	b := golden(t, "payment.bin", goldenPayment())
	fs := decode(t, b)
	checkTicketParams(t, one(t, fs, 1, lenDel).raw)
	if n := len(one(t, fs, 2, lenDel).raw); n != 20 {
		t.Errorf("sender %d bytes", n)
	}
	exp := decode(t, one(t, fs, 3, lenDel).raw)
	if one(t, exp, 1, varint).v != 5 {
		t.Errorf("expiration_params.creation_round wrong")
	}
	tsp := all(fs, 4)
	if len(tsp) != 2 {
		t.Fatalf("ticket_sender_params: %d, want 2", len(tsp))
	}
	for i, f := range tsp {
		if f.typ != lenDel {
			t.Fatalf("ticket_sender_params wire type %d", f.typ)
		}
		p := decode(t, f.raw)
		if one(t, p, 1, varint).v != uint64(i+1) || len(one(t, p, 2, lenDel).raw) != 65 {
			t.Errorf("ticket_sender_params[%d] wrong: %+v", i, p)
		}
	}
	checkPriceInfo(t, one(t, fs, 5, lenDel).raw)

	// And our own decoder reads back what it wrote.
	var got lpnet.Payment
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, goldenPayment()) {
		t.Errorf("round trip differs")
	}
}
