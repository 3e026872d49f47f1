package probe

import "github.com/lpgauge/lpgauge/capability"

// Bounds on an honest answer, from the request the tester sent. Each is
// generous (an honest orchestrator must never be refused) yet a few MiB at
// most for the requests the pipelines build, where the general caps
// (16 MiB body, 64 MiB per media file) let every hostile probe hold tens of
// MiB. Each pipeline's Build sets Request.MaxResponseBytes and MaxMediaBytes
// from these.

const (
	// jsonSlack covers an answer's JSON around its payload: field names,
	// seeds, media URLs, whitespace.
	jsonSlack = 16 << 10
	// mediaSlack bounds a media file the probe does not expect to fetch
	// (text answers): anything is a mistake, but not a costly one.
	mediaSlack = 64 << 10
	// pngMetadata leaves room for a PNG's ancillary chunks (text, ICC
	// profile, EXIF) beside its pixels.
	pngMetadata = 64 << 10
	// videoFrames is Stable Video Diffusion img2vid-xt's clip length, what
	// the orchestrator bills image-to-video for (Build's Units), and the
	// most frames a probe expects (svdFrames).
	videoFrames = capability.BilledVideoFrames
	// videoBytesPerPixel bounds an encoded video frame: above raw YUV 4:2:0
	// (1.5 bytes a pixel, which no MP4 encoder exceeds); the reference
	// orchestrator's Motion JPEG frames take 0.1–0.2.
	videoBytesPerPixel = 2
	// maxUpscale is the largest factor per side an upscale answer may have:
	// stable-diffusion-x4-upscaler's.
	maxUpscale = 4
	// samMaskValueBytes bounds one mask value printed by Python with its
	// separator: "0.0, " or "1.0, " with return_logits=false ("False, "
	// from a runner that prints booleans).
	samMaskValueBytes = 7
	// samLogitBytes bounds one low-resolution logit printed by Python: the
	// longest repr of a double ("-1.2345678901234567e-05") and ", ".
	samLogitBytes = 25
	// samLogitSide is SAM2's low-resolution mask side: logits are always
	// 256×256 per mask, whatever the input size.
	samLogitSide = 256
	// samMasks is what multimask_output=true returns.
	samMasks = 3
	// wavBytesPerSecond bounds speech audio: 48 kHz, 16-bit stereo or
	// 32-bit float mono (ai-runner writes 16-bit mono at the model's rate,
	// 16–44.1 kHz).
	wavBytesPerSecond = 48000 * 4
	// llmEventBytes bounds one server-sent event of a streamed completion
	// (a chunk with id, model, created, one delta, usage) and its framing.
	llmEventBytes = 4 << 10
	// llmExtraEvents counts events beside the tokens: the role delta, the
	// finish chunk, a usage chunk, [DONE], keep-alive comments.
	llmExtraEvents = 16
	// transcriptBytesPerSecond bounds a transcription with word-level
	// chunks: far above speech's 2–4 words a second, or Whisper repeating
	// itself at its token limit.
	transcriptBytesPerSecond = 16 << 10
	// captionBytes bounds an image caption.
	captionBytes = 64 << 10
)

// pngMaxBytes bounds an honest w×h PNG: 8-bit RGBA, each row's filter byte,
// stored without compression (deflate stored blocks and IDAT chunking cost
// well under 1/256), plus ancillary chunks. 16-bit PNGs are twice this; no
// AI runner writes them.
func pngMaxBytes(w, h int) int64 {
	raw := int64(h) * (1 + 4*int64(w))
	return raw + raw/256 + pngMetadata
}

// base64Len is the length of n bytes in standard base64 (a data URL).
func base64Len(n int64) int64 { return (n + 2) / 3 * 4 }

// inlineBody bounds a JSON answer carrying n files of at most each bytes,
// inline as base64 data URLs (runner-style targets) or as URLs to fetch.
func inlineBody(n int, each int64) int64 {
	return int64(n)*(base64Len(each)+512) + jsonSlack
}
