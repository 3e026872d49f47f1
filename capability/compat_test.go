package capability

import (
	"encoding/json"
	"os"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// TestCompatibleWithVectors gives go-livepeer's verdict on every row of its
// CompatibleWith table (conformance vector 03, made by go-livepeer's own
// core/capabilities.go at 176aa415c).
func TestCompatibleWithVectors(t *testing.T) {
	b, err := os.ReadFile("../conformance/testdata/go-livepeer/03_compatible_with.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Case    string          `json:"case"`
		Gateway json.RawMessage `json:"gateway_capabilities"`
		Orch    json.RawMessage `json:"orchestrator_capabilities"`
		Want    bool            `json:"CompatibleWith"`
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 19 {
		t.Fatalf("%d rows, want the 19 of the vector", len(rows))
	}
	for _, r := range rows {
		var gw, orch lpnet.Capabilities
		if err := protojson.Unmarshal(r.Gateway, &gw); err != nil {
			t.Fatalf("%s: gateway caps: %v", r.Case, err)
		}
		if err := protojson.Unmarshal(r.Orch, &orch); err != nil {
			t.Fatalf("%s: orchestrator caps: %v", r.Case, err)
		}
		if got := CompatibleWith(&gw, &orch); got != r.Want {
			t.Errorf("%s: CompatibleWith = %v, go-livepeer says %v", r.Case, got, r.Want)
		}
	}
}

func TestVersionCompatible(t *testing.T) {
	tests := []struct {
		min, v string
		want   bool
	}{
		{"", "", true},
		{"0.8.6", "", false},
		{"0.8.6", "undefined", false},
		{"0.8.6", "lpgauge", false},
		{"lpgauge", "0.0.1", true},
		{"0.8.6", "0.8.6-rc1", true},
		{"0.8.6-rc9", "0.8.6", true},
		{"0.8.6", "v0.9", true},
		{"0.8.6", "0.8", false},
		{"0.8.6", "0.9.1+abc", true},
		{"0.8.6", "0.9.1-01", false}, // numeric prerelease with a leading zero: unparsable
		{"0.9.1", "0.10.0", true},
	}
	for _, tt := range tests {
		if got := VersionCompatible(tt.min, tt.v); got != tt.want {
			t.Errorf("VersionCompatible(%q, %q) = %v, want %v", tt.min, tt.v, got, tt.want)
		}
	}
	if CompatibleWith(nil, &lpnet.Capabilities{}) {
		t.Error("nil gateway caps compatible; go-livepeer says false")
	}
	if bitsSubset([]uint64{1, 0}, []uint64{1}) {
		t.Error("a longer gateway bitstring passed; go-livepeer compares lengths first")
	}
}
