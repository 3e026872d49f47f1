package aimodels

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAIModelsGood(t *testing.T) {
	models, err := Parse(filepath.Join("testdata", "good.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 4 {
		t.Fatalf("got %d entries, want 4", len(models))
	}
	if m := models[0]; !m.Warm || m.Capacity != 2 || m.OptimizationFlags["SFAST"] != "true" || m.OptimizationFlags["DEEPCACHE"] != "false" {
		t.Errorf("entry 0: %+v", m)
	}
	if p := models[1].PricePerUnit.RatString(); p != "9/50" { // "0.18" as a string
		t.Errorf("string price parsed as %s, want 9/50", p)
	}
	if price, pixels := models[0].WeiPrice(); price != 4768371 || pixels != 1 {
		t.Errorf("wei price %d/%d", price, pixels)
	}
	if m := models[3]; m.URL != "http://127.0.0.1:9100" || m.Token != "secret" {
		t.Errorf("external entry %+v", m)
	}
}

func TestParseAIModelsInline(t *testing.T) {
	models, err := Parse("text-to-image:ByteDance/SDXL-Lightning:true,llm:meta-llama/Meta-Llama-3.1-8B-Instruct:false")
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 2 || models[0].ModelID != "ByteDance/SDXL-Lightning" || !models[0].Warm || models[1].Warm {
		t.Errorf("inline parsed as %+v", models)
	}
	for in, want := range map[string]string{
		"text-to-image:model":          "aiModels[0]: \"text-to-image:model\": expected <pipeline>:<model_id>:<warm>",
		"llm:a:true,llm:b:maybe":       "aiModels[1].warm: \"maybe\" is not a boolean",
		"text-to-painting:model:false": "aiModels[0].pipeline: unknown pipeline \"text-to-painting\"",
	} {
		if _, err := Parse(in); err == nil || err.Error() != want {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestParseAIModelsInvalid(t *testing.T) {
	for file, want := range map[string]string{
		"invalid-unknown-field.json":   `aiModels[0]: json: unknown field "warmth"`,
		"invalid-pipeline.json":        `aiModels[0].pipeline: unknown pipeline "text-to-painting"`,
		"invalid-missing-model.json":   `aiModels[1].model_id: required`,
		"invalid-price-text.json":      `aiModels[0]: "cheap" is not a number`,
		"invalid-price-negative.json":  `aiModels[0].price_per_unit: must not be negative`,
		"invalid-pixels-per-unit.json": `aiModels[0].pixels_per_unit: must be a positive integer, got 0`,
		"invalid-capacity-type.json":   `aiModels[0]: json: cannot unmarshal string into Go struct field Model.capacity of type int`,
		"invalid-warm-and-cold.json":   `aiModels[1].warm: llm a is both warm and cold (entry 0)`,
		"invalid-url.json":             `aiModels[0].url: "127.0.0.1:9000" is not an http(s) URL`,
		"invalid-not-array.json":       `aiModels: not a JSON array of entries`,
	} {
		t.Run(file, func(t *testing.T) {
			_, err := Parse(filepath.Join("testdata", file))
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %v, want prefix %q", err, want)
			}
		})
	}
}
