package mp4

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/media/pngfile"
)

// muxVideo is a w×h MP4 of n frames of frameBytes each at fps, from the
// reference orchestrator's muxer (the parser here is written separately,
// so each checks the other).
func muxVideo(w, h, fps, n, frameBytes int) []byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{0xff, 0xd8, byte(i)}, frameBytes/3+1)[:frameBytes]
	}
	var b bytes.Buffer
	if err := Write(&b, Video{Width: w, Height: h, FPS: fps, Frames: frames}); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// patch returns a copy of f with the 4 bytes after the first occurrence of
// box type typ (plus skip) set to v.
func patch(f []byte, typ string, skip int, v uint32) []byte {
	out := bytes.Clone(f)
	i := bytes.Index(out, []byte(typ))
	binary.BigEndian.PutUint32(out[i+4+skip:], v)
	return out
}

// The parser reads back what the muxer wrote, and refuses every damaged
// file with a reason, without allocating more than a few error strings
// whatever sizes and counts the file declares.
func TestParseMP4(t *testing.T) {
	good := muxVideo(64, 32, 8, 25, 100)
	v, err := Parse(good)
	if err != nil || v.Width != 64 || v.Height != 32 || v.Frames != 25 || v.Seconds != 25.0/8 {
		t.Fatalf("parsed %+v, %v: want 64x32, 25 frames, 3.125 s", v, err)
	}
	// moov after mdat, as ffmpeg writes without faststart.
	ftypLen := binary.BigEndian.Uint32(good)
	moovLen := binary.BigEndian.Uint32(good[ftypLen:])
	moovLast := append(append(bytes.Clone(good[:ftypLen]), good[ftypLen+moovLen:]...), good[ftypLen:ftypLen+moovLen]...)
	if v, err := Parse(moovLast); err != nil || v.Frames != 25 {
		t.Errorf("moov after mdat: %+v, %v", v, err)
	}

	soundTrack := bytes.Clone(good)
	copy(soundTrack[bytes.Index(soundTrack, []byte("vide")):], "soun")
	stszAt := bytes.Index(good, []byte("stsz"))
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "first box is not ftyp"},
		{"a PNG", pngfile.Gradient(8, 8, 1), "first box is not ftyp"},
		{"truncated in mdat", good[:len(good)-10], "truncated or corrupt"},
		{"truncated in moov", good[:ftypLen+moovLen/2], "truncated or corrupt"},
		{"only ftyp", good[:ftypLen], "no moov box"},
		{"garbage after ftyp", append(bytes.Clone(good[:ftypLen]), bytes.Repeat([]byte{0xee}, 64)...), "truncated or corrupt"},
		{"moov declares 4 GiB", patch(good, "moov", -8, 0xffffffff), "truncated or corrupt"},
		{"64-bit size of 2^62", append(append(bytes.Clone(good), 0, 0, 0, 1), "free\x40\x00\x00\x00\x00\x00\x00\x00"...), "truncated or corrupt"},
		{"box smaller than its header", patch(good, "mdat", -8, 4), "truncated or corrupt"},
		{"no video track", soundTrack, "no video track"},
		{"stsz declares 2^32-1 samples", patch(good, "stsz", 8, 0xffffffff), "room for 25"},
		{"stsz declares huge fixed samples", patch(patch(good, "stsz", 4, 0x7fffffff), "stsz", 8, 0xffff), "samples total"},
		{"no samples", patch(good, "stsz", 8, 0), "no samples"},
		{"chunk past the end", patch(good, "stco", 8, uint32(len(good))), "past the file"},
		{"mdhd timescale 0", patch(good, "mdhd", 12, 0), "timescale 0"},
		{"stsz cut short", append(patch(good[:stszAt+16], "stsz", -8, 20), good[stszAt+16:]...), "room for 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			allocs := testing.AllocsPerRun(10, func() { _, err = Parse(tt.file) })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if allocs > 8 {
				t.Errorf("%.0f allocations to refuse a %d-byte file", allocs, len(tt.file))
			}
		})
	}
	if allocs := testing.AllocsPerRun(10, func() { _, _ = Parse(good) }); allocs != 0 {
		t.Errorf("%.0f allocations to read a good file", allocs)
	}
}

// FuzzParseMP4 feeds damaged videos to the parser: it never panics, and
// what it accepts has a size, frames and a duration.
func FuzzParseMP4(f *testing.F) {
	good := muxVideo(16, 8, 6, 3, 20)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(patch(good, "stsz", 8, 0xffffffff))
	f.Add([]byte("\x00\x00\x00\x01ftyp\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err == nil && (v.Frames == 0 || v.Seconds < 0) {
			t.Fatalf("accepted %+v", v)
		}
	})
}
