package probe

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
)

// The corpus: every probe draws its inputs (prompt, LLM message, sentence,
// image pattern, audio, sizes, the generation seed) from a space the
// project generates rather than from a short fixed list, so an orchestrator
// cannot recognise a probe by an input it has seen before.
//
// Generated, not shipped as files: the word lists below compose millions of
// distinct inputs and the media are procedural (media/pngfile.Pattern,
// media/wav.Voice), so the repository carries a few KiB of words instead of
// megabytes of samples, and any row's input can be regenerated from its seed.
//
// A probe's seed is idx + CorpusSize·h (DrawSeed): idx picks the text input
// (a bijection from [0, CorpusSize) into each pipeline's composed space,
// checked by TestCorpusSpaces), h, from the probe's identity, drives
// everything else (sizes, pixels, noise). The tester sets
// idx = (slot seconds · corpusStride + salt) mod CorpusSize with CorpusSize
// prime, so two rounds of one (orchestrator, model) draw the same idx only
// if their slots are CorpusSize seconds (11.6 days) apart a whole number of
// times: no input repeats within about a million rounds, whatever the period.

// CorpusSize is the number of distinct text inputs per pipeline; prime.
const CorpusSize = 1_000_003

// corpusStride is coprime to CorpusSize (any value below it is) and large,
// so consecutive slots land far apart in the space.
const corpusStride = 618_034

// DrawSeed is the seed of one probe: key names the (region, orchestrator,
// pipeline, model) and salts where its walk through the corpus starts;
// probeID (the row's probe id, raw bytes) drives the rest of the draw, so a
// stored row's input can be rebuilt.
func DrawSeed(slotUnix int64, key string, probeID []byte) int64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	salt := h.Sum64() % CorpusSize
	idx := (uint64(slotUnix)%CorpusSize*corpusStride + salt) % CorpusSize
	var hi uint64
	if len(probeID) >= 8 {
		hi = binary.BigEndian.Uint64(probeID[:8])
	} else {
		hi = h.Sum64()
	}
	// Keep the seed a positive int64: hi below 2^63 / CorpusSize.
	hi %= (1 << 63) / CorpusSize
	return int64(hi*CorpusSize + idx)
}

// draw is one probe's inputs.
type draw struct {
	idx uint64     // the text input's index in [0, CorpusSize)
	rng *rand.Rand // sizes, pixels, noise
	raw uint64
}

// genSeed is the generation seed a job asks the model for (the "seed"
// field): the low 31 bits of the probe's seed, so it varies per probe and a
// test's fake orchestrator can tell which probe it serves (orchtest.Fails).
func (d draw) genSeed() int64 { return int64(d.raw & 0x7fffffff) }

func newDraw(seed int64) draw {
	u := uint64(seed)
	return draw{idx: u % CorpusSize, raw: u, rng: rand.New(rand.NewPCG(u, u^0x9e3779b97f4a7c15))}
}

// digits writes idx in the mixed radix of lists' lengths: distinct idx
// below the product give distinct picks.
func digits(idx uint64, lists ...[]string) []string {
	out := make([]string, len(lists))
	for i, l := range lists {
		n := uint64(len(l))
		out[i] = l[idx%n]
		idx /= n
	}
	return out
}

// space is the number of distinct picks of lists.
func space(lists ...[]string) uint64 {
	p := uint64(1)
	for _, l := range lists {
		p *= uint64(len(l))
	}
	return p
}

// step is a value in [lo, hi] on a grid of step, uniformly.
func (d draw) step(lo, hi, step int) int {
	return lo + step*d.rng.IntN((hi-lo)/step+1)
}

var (
	subjects = []string{
		"a brown bear", "an old lighthouse", "a red vintage bicycle", "a bowl of ramen", "an astronaut", "a red fox",
		"a futuristic city", "a cup of coffee", "a sailing ship", "a snow leopard", "a tiny robot", "a castle",
		"a hummingbird", "a steam locomotive", "a jazz trio", "a koi pond", "a desert caravan", "a glass greenhouse",
		"a mountain cabin", "an owl", "a street market", "a vintage typewriter", "a paper lantern", "a giant tortoise",
		"a wooden rowing boat", "a windmill", "a samurai", "a ballerina", "a dragon", "a hot air balloon",
		"a lemon tree", "an octopus", "a racing car", "a grandmother knitting", "a golden retriever", "a chess board",
		"a cathedral", "a herd of elephants", "a neon diner", "a waterfall", "a bookshop", "a tabby cat",
		"a violin", "a submarine", "a field of sunflowers", "a treehouse", "a pair of sneakers", "a bonsai tree",
	}
	actions = []string{
		"at rest", "in motion", "seen from above", "seen from below", "in the distance", "up close",
		"half hidden", "reflected in water", "covered in frost", "glowing softly", "in the rain", "in the wind",
		"under falling leaves", "surrounded by fog", "lit by lanterns", "casting a long shadow", "among wildflowers",
		"on a rooftop", "beside a river", "in a crowd", "alone", "at the edge of a cliff", "in a small room",
		"through a window", "in a mirror",
	}
	settings = []string{
		"at dawn", "at dusk", "at midnight", "at noon", "in autumn", "in winter", "in spring", "in summer",
		"on the moon", "in a forest", "in the mountains", "by the sea", "in a desert", "in Tokyo", "in Paris",
		"in a jungle", "on a farm", "underwater", "in space", "in a snowstorm", "during a thunderstorm",
		"in a cyberpunk alley", "in a medieval village", "in a quiet suburb", "on a tropical island",
		"in an abandoned factory", "in a botanical garden", "on a frozen lake", "in a busy harbour", "in a canyon",
	}
	styles = []string{
		"oil painting", "watercolor", "photorealistic", "35mm film photo", "pencil sketch", "digital art",
		"studio ghibli style", "low poly 3d render", "isometric illustration", "charcoal drawing", "pixel art",
		"ukiyo-e woodblock print", "art nouveau poster", "cinematic still", "macro photography", "pastel drawing",
		"comic book panel", "claymation", "vaporwave", "impressionist painting", "children's book illustration",
		"blueprint", "stained glass", "polaroid photo", "long exposure photo",
	}
	moods = []string{
		"", "soft light", "dramatic lighting", "golden hour", "high contrast", "muted colors", "vivid colors",
		"moody", "warm tones", "cool tones", "highly detailed", "minimalist", "bokeh", "wide angle", "4k",
		"symmetrical composition",
	}
)

// prompt is the idx-th image prompt: subject, action, setting, style, mood.
func (d draw) prompt() string {
	w := digits(d.idx, subjects, actions, settings, styles, moods)
	p := fmt.Sprintf("%s %s %s, %s", w[0], w[1], w[2], w[3])
	if w[4] != "" {
		p += ", " + w[4]
	}
	return p
}

var (
	asks = []string{
		"Explain", "In two sentences, explain", "Give three facts about", "Write a short poem about",
		"Summarise what you know about", "What is the history of", "List pros and cons of", "Describe",
		"Write a haiku about", "Tell me a fun fact about", "How would you teach", "What are common myths about",
		"Compare two opinions on", "Draft a tweet about", "Write a limerick about", "What questions should I ask about",
	}
	topics = []string{
		"why the sky is blue", "hash functions", "the rivers of Europe", "graphics cards", "photosynthesis",
		"the Roman empire", "black holes", "sourdough bread", "electric cars", "the stock market", "jazz music",
		"volcanoes", "the immune system", "chess openings", "honey bees", "quantum computing", "the Silk Road",
		"compound interest", "climate change", "coffee brewing", "the Olympic games", "plate tectonics",
		"machine learning", "the printing press", "sleep", "octopuses", "public key cryptography", "the moon landing",
		"rainbows", "bicycles", "recycling plastic", "the Great Wall of China", "learning a language", "tides",
		"solar panels", "ancient Egypt", "dinosaurs", "the internet", "meditation", "marathon training",
		"the water cycle", "origami", "vaccines", "the blockchain", "Mount Everest", "tea ceremonies",
		"wind turbines", "the human heart", "impressionism", "container shipping",
	}
	audiences = []string{
		"", "to a ten year old", "to a beginner", "to an expert", "to my grandmother", "for a school report",
		"for a job interview", "in plain English", "like a pirate", "for a podcast intro", "to a tourist",
		"for a newsletter",
	}
	formats = []string{
		"", "Keep it short.", "Use bullet points.", "Answer in one paragraph.", "Be concise.", "Add an example.",
		"No jargon please.", "End with a question.", "Use a friendly tone.", "Avoid lists.",
	}
	openers = []string{"", "Hi! ", "Quick question: ", "Please help. ", "Hello, ", "Hey, ", "I'm curious. ", "Thanks in advance. "}
	closers = []string{"", " Thanks!", " Please.", " :)"}
)

// question is the idx-th LLM user message.
func (d draw) question() string {
	w := digits(d.idx, asks, topics, audiences, formats, openers, closers)
	q := w[4] + w[0] + " " + w[1]
	if w[2] != "" {
		q += " " + w[2]
	}
	q += "."
	if w[3] != "" {
		q += " " + w[3]
	}
	return q + w[5]
}

var (
	speakers = []string{
		"The quick brown fox", "Our train", "The morning market", "My neighbour", "The old clock", "A small boat",
		"The new library", "Your package", "The orchestra", "A cold wind", "The weather forecast", "The bakery",
		"Our meeting", "The bus driver", "The garden", "A friendly dog", "The museum", "The last flight",
		"The science class", "A warm breeze",
	}
	verbs = []string{
		"arrives", "opens", "waits", "plays", "rests", "leaves", "returns", "closes", "starts", "shines",
		"sings", "moves", "stops", "grows", "turns",
	}
	places = []string{
		"near the river bank", "by the station", "in the kitchen", "across the bridge", "at the corner",
		"behind the hill", "on the third floor", "beside the lake", "in the city centre", "at the harbour",
		"under the old oak", "next to the school", "in the square", "along the coast", "inside the hall",
		"past the bakery", "at the end of the road", "in the valley", "on platform two", "near the fountain",
	}
	times = []string{
		"this morning", "tomorrow at nine", "every Sunday", "after lunch", "before sunset", "at midnight",
		"in ten minutes", "later tonight", "on Friday", "next spring", "right now", "at half past four",
	}
	tails = []string{
		".", ", so please be on time.", ", and everyone is welcome.", ", as it always does.",
		", if the weather holds.", ", or so they say.", ". Have a wonderful afternoon.", ". Please leave a message after the tone.",
	}
	intros = []string{"", "Attention please: ", "Note that ", "Remember, "}
	voices = []string{
		"A calm speaker with a clear voice.", "A cheerful female voice, fast pace.", "A deep male voice, slow and steady.",
		"A warm narrator with a slight echo.", "An energetic young speaker.", "A soft-spoken voice, close to the microphone.",
	}
)

// sentence is the idx-th text-to-speech text and its voice description.
func (d draw) sentence() (string, string) {
	w := digits(d.idx, speakers, verbs, places, times, tails, intros)
	s := fmt.Sprintf("%s %s %s %s%s", w[0], w[1], w[2], w[3], w[4])
	if w[5] != "" {
		s = w[5] + strings.ToLower(s[:1]) + s[1:]
	}
	return s, voices[d.rng.IntN(len(voices))]
}

var captionPrompts = []string{
	"a picture of", "describe the colors in", "this image shows", "what is in this image?", "caption:",
	"describe this photo", "an image of", "what do you see?", "", "describe the scene",
}

// filename is the upload's file name: what a user's file might be called.
func (d draw) filename(ext string) string {
	base := []string{"IMG_%04d", "photo_%d", "image%d", "upload-%d", "Screenshot_%d", "DSC%05d", "pic%d", "frame_%03d"}
	name := fmt.Sprintf(base[d.rng.IntN(len(base))], d.rng.IntN(10000))
	if d.rng.IntN(4) == 0 {
		name = strings.ToLower(name)
	}
	return name + "." + ext
}

// corpusSpaces lists each composed space, for the test that each holds at
// least CorpusSize distinct inputs.
func corpusSpaces() map[string]uint64 {
	return map[string]uint64{
		"prompt":   space(subjects, actions, settings, styles, moods),
		"question": space(asks, topics, audiences, formats, openers, closers),
		"sentence": space(speakers, verbs, places, times, tails, intros),
	}
}
