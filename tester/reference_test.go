package tester

import (
	"context"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/preparer"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// referenceModels is a model per pipeline, as orchestrators on the network
// name them.
var referenceModels = map[string]string{
	"text-to-image":      "ByteDance/SDXL-Lightning",
	"image-to-image":     "timbrooks/instruct-pix2pix",
	"image-to-video":     "stabilityai/stable-video-diffusion-img2vid-xt",
	"upscale":            "stabilityai/stable-diffusion-x4-upscaler",
	"audio-to-text":      "openai/whisper-large-v3",
	"segment-anything-2": "facebook/sam2-hiera-large",
	"llm":                "meta-llama/Meta-Llama-3.1-8B-Instruct",
	"image-to-text":      "Salesforce/blip-image-captioning-large",
	"text-to-speech":     "parler-tts/parler-tts-large-v1",
}

// Every pipeline the tester probes, end to end against the reference
// orchestrator (GetOrchestrator, Livepeer-Segment credentials, the
// orchestrator's request checks and result shaping, its CPU runners): each
// probe succeeds, so each validator accepts what the orchestrator really
// returns, and its phases are measured. A wire or shape mismatch between the
// two halves of the project shows here. Image-to-video runs with both Stable
// Video Diffusion clip lengths (25 frames for -xt, 14 for img2vid).
func TestEveryPipelineAgainstTheReferenceOrchestrator(t *testing.T) {
	type job struct{ slug, model string }
	var jobs []job
	var models []aimodels.Model
	for _, slug := range probe.Slugs() {
		if pl, _ := probe.Lookup(slug); pl.Info().ID == capability.LiveVideoToVideo {
			continue // a live session, not one job: its own tests (tester/probe live_test.go)
		}
		model, ok := referenceModels[slug]
		if !ok {
			t.Fatalf("pipeline %s has no model in referenceModels: add one", slug)
		}
		jobs = append(jobs, job{slug, model})
		models = append(models, aimodels.Model{Pipeline: slug, ModelID: model, Warm: true, Capacity: 1})
	}
	jobs = append(jobs, job{"image-to-video", "stabilityai/stable-video-diffusion-img2vid"})
	models = append(models, aimodels.Model{Pipeline: "image-to-video", ModelID: "stabilityai/stable-video-diffusion-img2vid", Warm: true, Capacity: 1})

	ref := orchtest.NewReference(t, orchtest.ReferenceConfig{Models: models})
	p := probe.New(probe.Config{Preparer: preparer.Preparer{Gateway: &gateway.Gateway{}},
		Timeouts: probe.Timeouts{Total: 60 * time.Second, Server: 45 * time.Second}})
	for i, j := range jobs {
		pl, _ := probe.Lookup(j.slug)
		r := p.Run(context.Background(), probe.Job{Orchestrator: ref.Address, ServiceURI: ref.URI, Pipeline: pl, Model: j.model, Seed: int64(i + 1)})
		if r.Outcome != results.Success {
			t.Errorf("%s %s: %s %s/%s (%s)", j.slug, j.model, r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
			continue
		}
		if r.Discovery <= 0 || r.Server <= 0 || r.Total < r.Server || r.OutputUnits <= 0 {
			t.Errorf("%s %s: discovery %s, server %s, total %s, output units %v: want each measured",
				j.slug, j.model, r.Discovery, r.Server, r.Total, r.OutputUnits)
		}
	}
}
