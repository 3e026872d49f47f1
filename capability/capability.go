// Package capability names the Livepeer AI capabilities the way go-livepeer
// does (core/capabilities.go): numeric ids, the human names gateways report
// and leaderboards store as "pipeline", and the HTTP path of each pipeline.
package capability

import "strings"

// ID is a go-livepeer capability number.
type ID uint32

// AI capability ids as go-livepeer numbers them.
const (
	TextToImage      ID = 27
	ImageToImage     ID = 28
	ImageToVideo     ID = 29
	Upscale          ID = 30
	AudioToText      ID = 31
	SegmentAnything2 ID = 32
	LLM              ID = 33
	ImageToText      ID = 34
	LiveVideoToVideo ID = 35
	TextToSpeech     ID = 36
	BYOC             ID = 37
)

// Pipeline ties a capability id to its name and HTTP path.
type Pipeline struct {
	ID   ID
	Name string // human name, e.g. "Text to image" (what the leaderboard stores)
	Slug string // HTTP path without the slash, e.g. "text-to-image" (what aiModels.json uses)
}

// Batch lists the request/response AI pipelines, in capability order.
var Batch = []Pipeline{
	{TextToImage, "Text to image", "text-to-image"},
	{ImageToImage, "Image to image", "image-to-image"},
	{ImageToVideo, "Image to video", "image-to-video"},
	{Upscale, "Upscale", "upscale"},
	{AudioToText, "Audio to text", "audio-to-text"},
	{SegmentAnything2, "Segment anything 2", "segment-anything-2"},
	{LLM, "Llm", "llm"},
	{ImageToText, "Image to text", "image-to-text"},
	{TextToSpeech, "Text to speech", "text-to-speech"},
}

var all = append(append([]Pipeline{}, Batch...), Pipeline{LiveVideoToVideo, "Live video to video", "live-video-to-video"})

// BySlug finds a pipeline by its HTTP path name ("text-to-image").
func BySlug(slug string) (Pipeline, bool) {
	for _, p := range all {
		if p.Slug == slug {
			return p, true
		}
	}
	return Pipeline{}, false
}

// ByName finds a pipeline by its human name, case-insensitively
// ("Text to image", "text to image").
func ByName(name string) (Pipeline, bool) {
	for _, p := range all {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Pipeline{}, false
}

// ByID finds a pipeline by capability id.
func ByID(id ID) (Pipeline, bool) {
	for _, p := range all {
		if p.ID == id {
			return p, true
		}
	}
	return Pipeline{}, false
}

// Lookup accepts either a slug or a human name.
func Lookup(s string) (Pipeline, bool) {
	if p, ok := BySlug(strings.ToLower(s)); ok {
		return p, true
	}
	return ByName(s)
}

// BilledVideoFrames is the clip length go-livepeer bills image-to-video for,
// whatever the model: width × height × 25 pixels.
const BilledVideoFrames = 25

// VideoFrames is the clip length ai-runner's image-to-video makes with a
// model. It passes no num_frames, so Stable Video Diffusion uses its UNet's
// default: 14 frames for stabilityai/stable-video-diffusion-img2vid, 25 for
// the -xt checkpoints (and any other model).
func VideoFrames(model string) int {
	if strings.HasSuffix(strings.ToLower(model), "/stable-video-diffusion-img2vid") {
		return 14
	}
	return BilledVideoFrames
}
