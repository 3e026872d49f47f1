package livets

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (make deps installs ffmpeg)", name)
		}
		t.Skipf("SKIPPING: %s is not installed, so no decoder checked the stream (apt-get install ffmpeg)", name)
	}
	return p
}

// ffprobe and ffmpeg, the tools a user reaches for, open a segment as H.264
// of the asked size, frame count and rate, and ffmpeg's decoded pictures are
// ours sample for sample (I_PCM is lossless), stamps included.
func TestFFmpegDecodesSegments(t *testing.T) {
	ffprobe, ffmpeg := tool(t, "ffprobe"), tool(t, "ffmpeg")
	for _, tc := range []struct {
		f      Format
		first  uint32
		frames int
		rate   string
	}{
		{DefaultFormat, 0, 30, "30/1"},
		{Format{Width: 320, Height: 176, FPS: 25}, 1000, 50, "25/1"},
		{Format{Width: 100, Height: 50, FPS: 60}, 7, 12, "60/1"}, // rounded up to 112×64
	} {
		enc := NewEncoder(tc.f)
		f := enc.Format()
		seg := enc.Segment(tc.first, tc.frames)
		path := filepath.Join(t.TempDir(), "seg.ts")
		if err := os.WriteFile(path, seg, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(seg)%188 != 0 {
			t.Errorf("%v: %d bytes is not whole 188-byte packets", f, len(seg))
		}
		out, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=codec_name,width,height,avg_frame_rate,nb_read_frames", "-of", "json", path).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe: %v\n%s", err, out)
		}
		var probe struct {
			Streams []struct {
				Codec  string `json:"codec_name"`
				Width  int    `json:"width"`
				Height int    `json:"height"`
				Rate   string `json:"avg_frame_rate"`
				Frames string `json:"nb_read_frames"`
			} `json:"streams"`
		}
		if err := json.Unmarshal(out, &probe); err != nil || len(probe.Streams) != 1 {
			t.Fatalf("ffprobe said %s: %v", out, err)
		}
		s := probe.Streams[0]
		if s.Codec != "h264" || s.Width != f.Width || s.Height != f.Height || s.Rate != tc.rate || s.Frames != itoa(tc.frames) {
			t.Errorf("ffprobe: %+v, want h264 %dx%d %s, %d frames", s, f.Width, f.Height, tc.rate, tc.frames)
		}
		raw, err := exec.Command(ffmpeg, "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-").Output()
		if err != nil {
			t.Fatalf("ffmpeg decode: %v", err)
		}
		size := f.Width * f.Height * 3 / 2
		if len(raw) != size*tc.frames {
			t.Fatalf("ffmpeg decoded %d bytes, want %d frames of %d", len(raw), tc.frames, size)
		}
		for i := 0; i < tc.frames; i++ {
			want := enc.picture(tc.first + uint32(i))
			got := &Picture{Width: f.Width, Height: f.Height, Y: raw[i*size : i*size+f.Width*f.Height]}
			if !bytes.Equal(got.Y, want.Y) {
				t.Fatalf("%v frame %d: ffmpeg's luma differs from the encoded picture", f, i)
			}
			if n, tr, ok := ReadStamp(got); n != tc.first+uint32(i) || tr || !ok {
				t.Fatalf("%v frame %d: stamp in ffmpeg's picture reads %d transformed=%v intact=%v", f, i, n, tr, ok)
			}
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// Decode reads back every frame number and PTS; Transform's output reads
// Transformed with the same numbers and PTS and still plays in ffmpeg.
func TestDecodeAndTransform(t *testing.T) {
	enc := NewEncoder(DefaultFormat)
	seg := enc.Segment(500, 30)
	frames, err := Decode(seg)
	if err != nil || len(frames) != 30 {
		t.Fatalf("Decode: %d frames, %v", len(frames), err)
	}
	for i, fr := range frames {
		want := Frame{Number: 500 + uint32(i), PTS: PTSOffset + time.Duration(500+i)*time.Second/30, Transformed: false, Intact: true}
		if fr.Number != want.Number || fr.Transformed || !fr.Intact || (fr.PTS-want.PTS).Abs() > 20*time.Microsecond {
			t.Fatalf("frame %d: %+v, want %+v", i, fr, want)
		}
	}
	out, err := Transform(seg)
	if err != nil {
		t.Fatal(err)
	}
	tframes, err := Decode(out)
	if err != nil || len(tframes) != 30 {
		t.Fatalf("Decode(Transform): %d frames, %v", len(tframes), err)
	}
	for i, fr := range tframes {
		if fr.Number != frames[i].Number || !fr.Transformed || !fr.Intact || fr.PTS != frames[i].PTS {
			t.Fatalf("transformed frame %d: %+v, input %+v", i, fr, frames[i])
		}
	}
	back, err := Transform(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, seg) {
		t.Error("inverting twice does not give the input segment back byte for byte")
	}
	if _, err := exec.LookPath("ffmpeg"); err == nil {
		path := filepath.Join(t.TempDir(), "out.ts")
		_ = os.WriteFile(path, out, 0o644)
		if msg, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput(); err != nil || len(msg) > 0 {
			t.Errorf("ffmpeg on the transformed segment: %v %s", err, msg)
		}
	}
}

// A damaged stamp reads as not intact; a picture of another size and a
// segment with no pictures are handled.
func TestStampDamage(t *testing.T) {
	enc := NewEncoder(DefaultFormat)
	p := enc.picture(77)
	p.Y[8*3+2] = 128 // one pixel of stamp block 3, halfway between levels
	frames, err := Decode(Mux(30, []*Picture{p}))
	if err != nil || len(frames) != 1 {
		t.Fatal(err)
	}
	if frames[0].Intact || frames[0].Number != 77 {
		t.Errorf("damaged stamp: %+v, want number 77, not intact", frames[0])
	}
	q := enc.picture(78)
	for i := 0; i < 8; i++ { // flip one bit block wholesale: the CRC catches it
		for x := 0; x < 8; x++ {
			q.Y[i*p.Width+8*5+x] = 255 - q.Y[i*p.Width+8*5+x]
		}
	}
	frames, _ = Decode(Mux(30, []*Picture{q}))
	if frames[0].Intact || frames[0].Number != 0 {
		t.Errorf("flipped bit: %+v, want unreadable", frames[0])
	}
	if _, err := Transform(Mux(30, nil)); err != ErrNoPictures {
		t.Errorf("Transform of an empty segment: %v", err)
	}
}

// Decode on hostile input: random bytes, truncations and bit flips of a real
// segment, a huge declared picture. It never panics, and the time it takes
// stays linear in the input (the whole run is bounded below).
func TestDecodeHostileInput(t *testing.T) {
	seg := NewEncoder(DefaultFormat).Segment(0, 10)
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	inputs := [][]byte{nil, {0x47}, bytes.Repeat([]byte{0x47}, 188*100), make([]byte, 188*50)}
	for i := 0; i < 300; i++ {
		junk := make([]byte, rng.IntN(20000))
		for j := range junk {
			junk[j] = byte(rng.UintN(256))
		}
		for j := 0; j+188 <= len(junk); j += 188 {
			junk[j] = 0x47
		}
		inputs = append(inputs, junk, seg[:rng.IntN(len(seg))])
		flipped := bytes.Clone(seg)
		for k := 0; k < 1+rng.IntN(50); k++ {
			flipped[rng.IntN(len(flipped))] ^= 1 << rng.UintN(8)
		}
		inputs = append(inputs, flipped)
	}
	// An SPS declaring a picture far over the bound is refused before any
	// picture is allocated.
	var sp seqParams
	if err := parseSPS(unescape(sps(Format{Width: 8192, Height: 8192, FPS: 30})[5:]), &sp); err == nil {
		t.Error("SPS of 8192×8192 accepted")
	}
	for _, in := range inputs {
		frames, err := Decode(in)
		if err == nil && len(frames) > len(in)/188 {
			t.Fatalf("%d frames from %d bytes", len(frames), len(in))
		}
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("hostile inputs took %v", el)
	}
	if _, err := Decode(make([]byte, MaxInput+188)); err == nil {
		t.Error("input over MaxInput accepted")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(NewEncoder(DefaultFormat).Segment(0, 2))
	f.Add([]byte{0x47, 0x40, 0x00, 0x10})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Decode(b)
	})
}

// A runner that re-encodes (ffmpeg's libx264, as a real pipeline's output
// would be) leaves pictures Decode cannot read as I_PCM — they come back
// not intact, numbered 0 — but the stamp still reads from any decoder's
// pictures with ReadStamp.
func TestStampSurvivesReencode(t *testing.T) {
	ffmpeg := tool(t, "ffmpeg")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.ts"), filepath.Join(dir, "x264.ts")
	enc := NewEncoder(DefaultFormat)
	if err := os.WriteFile(in, enc.Segment(40, 15), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(ffmpeg, "-v", "error", "-y", "-i", in, "-c:v", "libx264", "-crf", "23", "-f", "mpegts", out).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg libx264 (CI's ffmpeg has it): %v %s", err, msg)
	}
	reenc, _ := os.ReadFile(out)
	frames, err := Decode(reenc)
	if err != nil || len(frames) != 15 {
		t.Fatalf("Decode of libx264 output: %d frames, %v", len(frames), err)
	}
	for _, f := range frames {
		if f.Intact || f.Number != 0 {
			t.Fatalf("libx264 frame read as I_PCM: %+v", f)
		}
	}
	raw, err := exec.Command(ffmpeg, "-v", "error", "-i", out, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := enc.Format()
	size := f.Width * f.Height * 3 / 2
	if len(raw) != 15*size {
		t.Fatalf("%d bytes of rawvideo, want 15 frames", len(raw))
	}
	for i := 0; i < 15; i++ {
		p := &Picture{Width: f.Width, Height: f.Height, Y: raw[i*size : i*size+f.Width*f.Height]}
		if n, tr, _ := ReadStamp(p); n != 40+uint32(i) || tr {
			t.Fatalf("re-encoded frame %d: stamp reads %d transformed=%v", i, n, tr)
		}
	}
}
