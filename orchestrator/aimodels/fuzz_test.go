package aimodels

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/capability"
)

// FuzzParseAIModels: -aiModels text never panics; what parses is valid, and
// written back as a JSON array it parses to the same entries.
func FuzzParseAIModels(f *testing.F) {
	for _, s := range []string{
		"text-to-image:ByteDance/SDXL-Lightning:true,llm:meta-llama/Meta-Llama-3.1-8B-Instruct:false",
		`[{"pipeline":"text-to-image","model_id":"ByteDance/SDXL-Lightning","warm":true,"capacity":2,"optimization_flags":{"SFAST":true,"DEEPCACHE":false}}]`,
		`[{"pipeline":"llm","model_id":"m","price_per_unit":"0.18","pixels_per_unit":"1e6","currency":"USD","url":"http://127.0.0.1:9100","token":"secret"}]`,
		`[{"pipeline":"image-to-video","model_id":"m","price_per_unit":"3/2","optimization_flags":{"N":1.5e3}}]`,
		`[{"pipeline":"audio-to-text","model_id":"m","price_per_unit":1e-300,"pixels_per_unit":1e9}]`,
		`[{"pipeline":"text-to-image","model_id":"m","price_per_unit":"1e1000000"}]`,
		`[{"pipeline":"text-to-image","model_id":"m","optimization_flags":{"x":null}}]`,
		`[{"pipeline":"live-video-to-video","model_id":"m"}]`,
		`[{"pipeline":"text-to-image","model_id":"m","warmth":true}]`,
		`[]`, `{}`, `[`, `[null]`, `[1]`,
		"llm:a:true,llm:a:false", "::", ",", "a:b:c:d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.HasPrefix(strings.TrimSpace(s), "[") && strings.ContainsAny(s, "/.") && !strings.Contains(s, ":") {
			return // could name a file on this machine; files are covered by testdata
		}
		models, err := Parse(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "aiModels") {
				t.Fatalf("%q: error %q does not say it is about aiModels", s, err)
			}
			return
		}
		if err := Validate(models); err != nil {
			t.Fatalf("%q: parsed entries do not validate: %v", s, err)
		}
		for i, m := range models {
			if _, ok := capability.BySlug(m.Pipeline); !ok || m.ModelID == "" || m.Capacity < 0 {
				t.Fatalf("%q: entry %d accepted: %+v", s, i, m)
			}
		}
		again, err := json.Marshal(models)
		if err != nil {
			t.Fatalf("%q: parsed entries do not encode: %v", s, err)
		}
		back, err := Parse(string(again))
		if err != nil {
			t.Fatalf("%q: re-encoded as %s, refused: %v", s, again, err)
		}
		if b2, _ := json.Marshal(back); !bytes.Equal(again, b2) {
			t.Fatalf("%q: round trip changed the entries:\n%s\n%s", s, again, b2)
		}
	})
}
