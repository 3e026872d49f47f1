package runner

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/capability"
)

func init() {
	specs["text-to-image"] = pipelineSpec{errName: "Text-to-image", parse: parseTextToImage}
	specs["image-to-image"] = pipelineSpec{errName: "Image-to-image", multipart: true, parse: parseImageToImage}
	specs["upscale"] = pipelineSpec{errName: "Upscale", multipart: true, parse: parseUpscale}
	specs["image-to-video"] = pipelineSpec{errName: "Image-to-video", multipart: true, parse: parseImageToVideo}
	specs["image-to-text"] = pipelineSpec{errName: "Image-to-text", multipart: true, parse: parseImageToText}
}

// Media is ai-runner's Media: a data URL plus the seed that made it.
type Media struct {
	URL  string `json:"url"`
	Seed int    `json:"seed"`
	NSFW bool   `json:"nsfw"`
}

// ImageResponse is ai-runner's ImageResponse.
type ImageResponse struct {
	Images []Media `json:"images"`
}

// VideoResponse is the runner's VideoResponse: a batch of frame lists.
type VideoResponse struct {
	Frames [][]Media `json:"frames"`
}

// maxImagesPerRequest keeps num_images_per_prompt from turning one request
// into minutes of encoding.
const maxImagesPerRequest = 16

const oomMessage = "Out of memory error. Try reducing output image resolution."

func checkPrompt(prompt string) error {
	if strings.TrimSpace(prompt) == "" {
		return badRequest("Prompt must be provided.")
	}
	return nil
}

func checkSize(w, h, n int) error {
	switch {
	case w <= 0 || h <= 0:
		return badRequest(fmt.Sprintf("width and height must be positive, got %dx%d.", w, h))
	case w*h > MaxImagePixels:
		return badRequest(oomMessage)
	case n < 1 || n > maxImagesPerRequest:
		return badRequest(fmt.Sprintf("num_images_per_prompt must be between 1 and %d.", maxImagesPerRequest))
	}
	return nil
}

// images renders n PNGs; image i uses seed+i, as ai-runner's routes do.
func images(ctx context.Context, delay time.Duration, w, h, n int, seed uint64) (any, error) {
	if err := sleep(ctx, delay); err != nil {
		return nil, err
	}
	out := ImageResponse{Images: make([]Media, n)}
	for i := range n {
		b, err := renderPNG(w, h, seed+uint64(i))
		if err != nil {
			return nil, err
		}
		out.Images[i] = Media{URL: dataURL("image/png", b), Seed: int(seed) + i}
	}
	return out, nil
}

func parseTextToImage(r *Runner, p *params) (task, error) {
	prompt := p.str("prompt", "", true)
	_ = p.str("loras", "", false)
	h := p.integer("height", 576)
	w := p.integer("width", 1024)
	_ = p.number("guidance_scale", 7.5)
	_ = p.str("negative_prompt", "", false)
	_ = p.boolean("safety_check", true)
	seed, _ := p.optInt("seed")
	steps := p.integer("num_inference_steps", 50)
	n := p.integer("num_images_per_prompt", 1)
	if err := checkPrompt(prompt); err != nil {
		return task{}, err
	}
	if err := checkSize(w, h, n); err != nil {
		return task{}, err
	}
	s := r.seedOrRandom(seed)
	return task{unit: "steps", total: steps, run: func(ctx context.Context, d time.Duration) (any, error) { return images(ctx, d, w, h, n, s) }}, nil
}

// inputImage reads and measures the uploaded image. Unreadable images are the
// caller's fault, so they get a 400 rather than ai-runner's generic 500.
func inputImage(p *params) (w, h int, err error) {
	fh, ok := p.file("image")
	if !ok {
		return 0, 0, nil
	}
	b, err := readFile(fh)
	if err != nil {
		return 0, 0, badRequest("Could not read the image file.")
	}
	w, h, err = ImageSize(b)
	if err != nil {
		return 0, 0, badRequest("Unsupported image format or malformed file.")
	}
	return w, h, nil
}

func parseImageToImage(r *Runner, p *params) (task, error) {
	prompt := p.str("prompt", "", true)
	w, h, imgErr := inputImage(p)
	_ = p.str("loras", "", false)
	_ = p.number("strength", 0.8)
	_ = p.number("guidance_scale", 7.5)
	_ = p.number("image_guidance_scale", 1.5)
	_ = p.str("negative_prompt", "", false)
	_ = p.boolean("safety_check", true)
	seed, _ := p.optInt("seed")
	steps := p.integer("num_inference_steps", 100)
	n := p.integer("num_images_per_prompt", 1)
	if err := checkPrompt(prompt); err != nil {
		return task{}, err
	}
	if imgErr != nil {
		return task{}, imgErr
	}
	if err := checkSize(w, h, n); err != nil {
		return task{}, err
	}
	s := r.seedOrRandom(seed)
	return task{unit: "steps", total: steps, run: func(ctx context.Context, d time.Duration) (any, error) { return images(ctx, d, w, h, n, s) }}, nil
}

// upscaleFactor is what stable-diffusion-x4-upscaler does to each side.
const upscaleFactor = 4

func parseUpscale(r *Runner, p *params) (task, error) {
	prompt := p.str("prompt", "", true)
	w, h, imgErr := inputImage(p)
	_ = p.boolean("safety_check", true)
	seed, _ := p.optInt("seed")
	steps := p.integer("num_inference_steps", 75)
	if err := checkPrompt(prompt); err != nil {
		return task{}, err
	}
	if imgErr != nil {
		return task{}, imgErr
	}
	w, h = w*upscaleFactor, h*upscaleFactor
	if err := checkSize(w, h, 1); err != nil {
		return task{}, err
	}
	s := r.seedOrRandom(seed)
	return task{unit: "steps", total: steps, run: func(ctx context.Context, d time.Duration) (any, error) { return images(ctx, d, w, h, 1, s) }}, nil
}

// videoFrames is Stable Video Diffusion img2vid-xt's clip length; the
// orchestrator bills i2v as 25 frames for the same reason.
const videoFrames = capability.BilledVideoFrames

func parseImageToVideo(r *Runner, p *params) (task, error) {
	_, _, imgErr := inputImage(p)
	h := p.integer("height", 576)
	w := p.integer("width", 1024)
	_ = p.integer("fps", 6)
	_ = p.integer("motion_bucket_id", 127)
	_ = p.number("noise_aug_strength", 0.02)
	_ = p.boolean("safety_check", true)
	seed, _ := p.optInt("seed")
	_ = p.integer("num_inference_steps", 25)
	if imgErr != nil {
		return task{}, imgErr
	}
	if h%8 != 0 || w%8 != 0 {
		return task{}, badRequest(fmt.Sprintf("`height` and `width` have to be divisible by 8 but are %d and %d.", h, w))
	}
	if err := checkSize(w, h, 1); err != nil {
		return task{}, err
	}
	if w*h*videoFrames > 8*MaxImagePixels {
		return task{}, &statusError{http.StatusBadRequest, oomMessage}
	}
	s := r.seedOrRandom(seed)
	return task{unit: "frames", total: capability.VideoFrames(r.cfg.ModelID), run: func(ctx context.Context, d time.Duration) (any, error) {
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
		frames := make([]Media, capability.VideoFrames(r.cfg.ModelID))
		for i := range frames {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b, err := renderPNG(w, h, s+uint64(i))
			if err != nil {
				return nil, err
			}
			// Every frame carries the request's seed, as ai-runner's do.
			frames[i] = Media{URL: dataURL("image/png", b), Seed: int(s)}
		}
		return VideoResponse{Frames: [][]Media{frames}}, nil
	}}, nil
}

// ImageToTextResponse is ai-runner's ImageToTextResponse.
type ImageToTextResponse struct {
	Text string `json:"text"`
}

func parseImageToText(_ *Runner, p *params) (task, error) {
	w, h, imgErr := inputImage(p)
	prompt := p.str("prompt", "", false)
	if imgErr != nil {
		return task{}, imgErr
	}
	return task{run: func(ctx context.Context, d time.Duration) (any, error) {
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
		// BLIP continues a conditional prompt; do the same with seeded words.
		caption := words(uint64(w)<<32|uint64(h), 8+int(uint64(w*h)%7))
		if prompt != "" {
			caption = strings.TrimSpace(prompt) + " " + caption
		}
		return ImageToTextResponse{Text: caption}, nil
	}}, nil
}

var vocabulary = strings.Fields(`a the of and with in on small large bright dark city river mountain cat dog
person street light sky tree house window car road field water blue red green old new quiet busy morning
evening cloud stone wooden glass garden bridge boat train forest beach snow rain sun`)

// words is a deterministic run of n vocabulary words from seed.
func words(seed uint64, n int) string {
	out := make([]string, n)
	x := seed
	for i := range out {
		x = splitmix(x)
		out[i] = vocabulary[x%uint64(len(vocabulary))]
	}
	return strings.Join(out, " ")
}
