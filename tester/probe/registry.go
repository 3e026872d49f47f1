package probe

import (
	"sort"
	"strings"
)

// registry maps a pipeline slug to its prober half. Adding a pipeline is one
// file and one line here.
var registry = map[string]Pipeline{
	"text-to-image":      TextToImage{},
	"image-to-image":     ImageToImage{},
	"image-to-video":     ImageToVideo{},
	"upscale":            Upscale{},
	"audio-to-text":      AudioToText{},
	"segment-anything-2": SegmentAnything2{},
	"llm":                LLM{},
	"image-to-text":      ImageToText{},
	"text-to-speech":     TextToSpeech{},
	// A live session, not one request (live.go).
	"live-video-to-video": LiveVideoToVideo{},
}

// Lookup finds the Pipeline for a slug ("text-to-image") or a human name
// ("Text to image").
func Lookup(name string) (Pipeline, bool) {
	if p, ok := registry[strings.ToLower(name)]; ok {
		return p, true
	}
	for _, p := range registry {
		if strings.EqualFold(p.Info().Name, name) {
			return p, true
		}
	}
	return nil, false
}

// Slugs lists the pipelines the tester can probe, sorted.
func Slugs() []string {
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
