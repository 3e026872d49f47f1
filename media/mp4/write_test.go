package mp4

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// frames returns n distinct w×h JPEGs.
func frames(t testing.TB, w, h, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img.Set(x, y, color.RGBA{uint8(x + i*10), uint8(y), uint8(i * 40), 255})
			}
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
			t.Fatal(err)
		}
		out[i] = b.Bytes()
	}
	return out
}

// find returns the body of the box at path (e.g. "moov/trak/mdia/mdhd")
// within b, a sequence of boxes.
func find(t *testing.T, b []byte, path ...string) []byte {
	t.Helper()
	for len(b) >= 8 {
		size := binary.BigEndian.Uint32(b)
		if size < 8 || int(size) > len(b) {
			t.Fatalf("box %q has size %d with %d bytes left", b[4:8], size, len(b))
		}
		if string(b[4:8]) == path[0] {
			if len(path) == 1 {
				return b[8:size]
			}
			return find(t, b[8:size], path[1:]...)
		}
		b = b[size:]
	}
	t.Fatalf("no box %v", path)
	return nil
}

// The boxes say what a player needs: the size in tkhd and the sample
// entry, fps as the timescale, one sample per frame, and the chunk offset
// lands on the first JPEG, whose bytes follow one another in mdat.
func TestWriteLayout(t *testing.T) {
	fr := frames(t, 64, 32, 3)
	var buf bytes.Buffer
	if err := Write(&buf, Video{Width: 64, Height: 32, FPS: 8, Frames: fr}); err != nil {
		t.Fatal(err)
	}
	f := buf.Bytes()
	if string(f[4:8]) != "ftyp" || string(f[8:12]) != "isom" {
		t.Fatalf("starts %q, want an isom ftyp", f[:12])
	}
	be := binary.BigEndian
	tkhd := find(t, f, "moov", "trak", "tkhd")
	if w, h := be.Uint32(tkhd[76:]), be.Uint32(tkhd[80:]); w != 64<<16 || h != 32<<16 {
		t.Errorf("tkhd size %x×%x", w, h)
	}
	mdhd := find(t, f, "moov", "trak", "mdia", "mdhd")
	if scale, dur := be.Uint32(mdhd[12:]), be.Uint32(mdhd[16:]); scale != 8 || dur != 3 {
		t.Errorf("mdhd timescale %d duration %d, want 8 and 3", scale, dur)
	}
	stbl := []string{"moov", "trak", "mdia", "minf", "stbl"}
	entry := find(t, f, append(stbl, "stsd")...)[8:]
	if string(entry[4:8]) != "jpeg" || be.Uint16(entry[32:]) != 64 || be.Uint16(entry[34:]) != 32 {
		t.Errorf("sample entry %q %dx%d", entry[4:8], be.Uint16(entry[32:]), be.Uint16(entry[34:]))
	}
	stsz := find(t, f, append(stbl, "stsz")...)
	if n := be.Uint32(stsz[8:]); n != 3 {
		t.Fatalf("stsz has %d samples", n)
	}
	off := be.Uint32(find(t, f, append(stbl, "stco")...)[8:])
	for i, fb := range fr {
		size := be.Uint32(stsz[12+4*i:])
		if int(size) != len(fb) || !bytes.Equal(f[off:off+size], fb) {
			t.Fatalf("sample %d at %d (%d bytes) is not frame %d", i, off, size, i)
		}
		off += size
	}
	if int(off) != len(f) {
		t.Errorf("file has %d bytes after the last sample", len(f)-int(off))
	}
}

func TestWriteRefuses(t *testing.T) {
	ok := frames(t, 8, 8, 1)
	for _, v := range []Video{
		{Width: 8, Height: 8, FPS: 6},
		{Width: 8, Height: 8, FPS: 0, Frames: ok},
		{Width: 0, Height: 8, FPS: 6, Frames: ok},
		{Width: 70000, Height: 8, FPS: 6, Frames: ok},
		{Width: 8, Height: 8, FPS: 6, Frames: [][]byte{ok[0], {}}},
	} {
		if err := Write(&bytes.Buffer{}, v); !errors.Is(err, ErrInvalid) {
			t.Errorf("%dx%d@%d with %d frames: %v, want ErrInvalid", v.Width, v.Height, v.FPS, len(v.Frames), err)
		}
	}
}

// ffprobe, the tool a user would reach for, opens the file as Motion JPEG
// with the right size, frame count and duration, and ffmpeg decodes every
// frame without an error.
func TestFFprobeReadsIt(t *testing.T) {
	probe, err := exec.LookPath("ffprobe")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffprobe is not installed (make deps installs ffmpeg)")
		}
		t.Skip("SKIPPING: ffprobe is not installed, so no decoder checked the MP4 (apt-get install ffmpeg)")
	}
	const w, h, n, fps = 64, 48, 25, 6
	var buf bytes.Buffer
	if err := Write(&buf, Video{Width: w, Height: h, FPS: fps, Frames: frames(t, w, h, n)}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v.mp4")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(probe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames,duration,avg_frame_rate:format=format_name", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	var res struct {
		Streams []struct {
			Codec     string `json:"codec_name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
			Frames    string `json:"nb_read_frames"`
			Duration  string `json:"duration"`
			FrameRate string `json:"avg_frame_rate"`
		} `json:"streams"`
		Format struct {
			Name string `json:"format_name"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe said %s: %v", out, err)
	}
	s := res.Streams[0]
	dur, _ := strconv.ParseFloat(s.Duration, 64)
	if s.Codec != "mjpeg" || s.Width != w || s.Height != h || s.Frames != strconv.Itoa(n) || dur < 4.16 || dur > 4.17 || s.FrameRate != "6/1" {
		t.Errorf("ffprobe: %s, want mjpeg %dx%d, %d frames, %.3f s at 6/1", out, w, h, n, float64(n)/fps)
	}
	if ffmpeg, err := exec.LookPath("ffmpeg"); err == nil {
		if out, err := exec.Command(ffmpeg, "-v", "error", "-xerror", "-i", path, "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("ffmpeg decode: %v\n%s", err, out)
		}
	}
}
