// Package livets is the synthetic live stream of the live-video-to-video
// probe: MPEG-TS segments carrying H.264 pictures made of I_PCM macroblocks
// (raw samples, so no encoder is needed and any decoder reads them), each
// picture stamped with its frame number in luma blocks that survive the CPU
// runner's transform. Decode reads the stamps back (frame number, PTS,
// whether the picture was transformed, whether it is intact); Transform is
// the reference runner's visible, cheap transform (inverted luma).
package livets

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Format is the picture size and frame rate of a stream. Width and Height
// are rounded up to multiples of 16 (whole macroblocks), at least 64×48;
// FPS is at least 1 (30 when zero).
type Format struct{ Width, Height, FPS int }

// DefaultFormat is the probe's stream: small, so a segment is cheap to make.
var DefaultFormat = Format{Width: 128, Height: 64, FPS: 30}

func (f Format) normal() Format {
	round := func(v, lo int) int { return max((v+15)/16*16, lo) }
	f.Width, f.Height = round(f.Width, 64), round(f.Height, 48)
	if f.FPS <= 0 {
		f.FPS = 30
	}
	return f
}

// PTSOffset is the PTS of frame 0: frame n is presented at PTSOffset + n/FPS.
// The PCR runs PTSOffset behind the PTS, as muxers leave decoders a delay.
const PTSOffset = 100 * time.Millisecond

// Picture is one decoded 4:2:0 picture.
type Picture struct {
	Width, Height int
	Y, Cb, Cr     []byte
	PTS           time.Duration
}

func newPicture(w, h int) *Picture {
	return &Picture{Width: w, Height: h, Y: make([]byte, w*h), Cb: make([]byte, w*h/4), Cr: make([]byte, w*h/4)}
}

// Frame is what Decode reads from one picture.
type Frame struct {
	// Number is the stamped frame number (0 when the stamp is unreadable).
	Number uint32
	// PTS is the presentation time carried by the stream.
	PTS time.Duration
	// Transformed says the picture is the runner's transform of the stamped
	// input (inverted luma); a passthrough picture reads false.
	Transformed bool
	// Intact says the picture decoded and its stamp reads cleanly with a
	// valid checksum.
	Intact bool
}

// Encoder makes stamped segments of one Format.
type Encoder struct{ f Format }

// NewEncoder returns an Encoder for f (normalised as Format says).
func NewEncoder(f Format) *Encoder { return &Encoder{f: f.normal()} }

// Format is the encoder's normalised format.
func (e *Encoder) Format() Format { return e.f }

// FramePTS is the PTS of frame n.
func (e *Encoder) FramePTS(n uint32) time.Duration {
	return PTSOffset + time.Duration(uint64(n)*uint64(time.Second)/uint64(e.f.FPS))
}

// Segment returns one MPEG-TS segment of n frames from firstFrame on: PAT
// and PMT first, then one PES per frame, every frame an IDR picture, so
// each segment decodes on its own.
func (e *Encoder) Segment(firstFrame uint32, n int) []byte {
	pics := make([]*Picture, 0, n)
	for i := 0; i < n; i++ {
		num := firstFrame + uint32(i)
		pics = append(pics, e.picture(num))
	}
	return Mux(e.f.FPS, pics)
}

// Mux writes pictures (all of one size) as one MPEG-TS segment with their
// own PTS; fps goes into the SPS timing information.
func Mux(fps int, pics []*Picture) []byte {
	m := &muxer{cc: map[uint16]byte{}}
	m.tables()
	for i, p := range pics {
		f := Format{Width: p.Width, Height: p.Height, FPS: max(fps, 1)}
		au := append(aud(), sps(f)...)
		au = append(au, pps()...)
		au = append(au, idrSlice(p, uint32(i%2))...)
		pts := uint64((p.PTS*90000 + time.Second/2) / time.Second)
		m.pes(au, pts, pts-min(pts, uint64(PTSOffset*90000/time.Second)))
	}
	return m.out
}

// The stamp: the luma plane is cut into 8×8 blocks in raster order. Block 0
// is the marker (white in a stamped input, dark once inverted), blocks 1-32
// the frame number (most significant bit first), blocks 33-40 a CRC-8 of it.
const (
	stampBlocks = 41
	levelMarker = 235
	levelOne    = 200
	levelZero   = 56
	// tolerance is how far a stamp pixel may be from its level and still
	// count as intact.
	tolerance = 24
)

func crc8(v uint32) byte {
	var crc byte
	for _, b := range []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} {
		crc ^= b
		for i := 0; i < 8; i++ {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x07
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func stampLevels(num uint32) [stampBlocks]byte {
	var lv [stampBlocks]byte
	lv[0] = levelMarker
	bits := uint64(num)<<8 | uint64(crc8(num))
	for i := 1; i < stampBlocks; i++ {
		if bits>>(uint(stampBlocks-1-i))&1 == 1 {
			lv[i] = levelOne
		} else {
			lv[i] = levelZero
		}
	}
	return lv
}

func (e *Encoder) picture(num uint32) *Picture {
	w, h := e.f.Width, e.f.Height
	p := newPicture(w, h)
	p.PTS = e.FramePTS(num)
	// A moving diagonal pattern, so the video visibly plays.
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p.Y[y*w+x] = byte(16 + (x+y+4*int(num))%200)
		}
	}
	for i := range p.Cb {
		p.Cb[i] = byte(96 + (i+int(num))%64)
		p.Cr[i] = 128
	}
	lv := stampLevels(num)
	bw := w / 8
	for b, level := range lv {
		bx, by := b%bw*8, b/bw*8
		for y := 0; y < 8; y++ {
			for x := 0; x < 8; x++ {
				p.Y[(by+y)*w+bx+x] = level
			}
		}
	}
	return p
}

// ReadStamp reads the stamp of a picture decoded by any decoder (e.g.
// ffmpeg's rawvideo output of a runner that re-encodes): only Y, Width and
// Height are used. The number is read from block means, so mild lossy coding
// still reads; intact needs every stamp pixel within 24 of its level.
func ReadStamp(p *Picture) (num uint32, transformed, intact bool) {
	if p == nil || p.Width <= 0 || p.Height <= 0 || len(p.Y) < p.Width*p.Height {
		return 0, false, false
	}
	return readStamp(p)
}

// readStamp reads the stamp of a picture.
func readStamp(p *Picture) (num uint32, transformed, intact bool) {
	w := p.Width
	bw := w / 8
	if bw*(p.Height/8) < stampBlocks {
		return 0, false, false
	}
	mean := func(b int) (int, int, int) {
		bx, by := b%bw*8, b/bw*8
		sum, lo, hi := 0, 255, 0
		for y := 0; y < 8; y++ {
			for x := 0; x < 8; x++ {
				v := int(p.Y[(by+y)*w+bx+x])
				sum += v
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		return sum / 64, lo, hi
	}
	m0, _, _ := mean(0)
	transformed = m0 < 128
	level := func(v int) int {
		if transformed {
			return 255 - v
		}
		return v
	}
	intact = true
	if abs(level(m0)-levelMarker) > tolerance {
		intact = false
	}
	var bits uint64
	for i := 1; i < stampBlocks; i++ {
		m, lo, hi := mean(i)
		v := level(m)
		want := levelZero
		if v >= 128 {
			bits |= 1 << uint(stampBlocks-1-i)
			want = levelOne
		}
		if abs(level(lo)-want) > tolerance || abs(level(hi)-want) > tolerance {
			intact = false
		}
	}
	num = uint32(bits >> 8)
	if crc8(num) != byte(bits) {
		return 0, transformed, false
	}
	return num, transformed, intact
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// DecodePictures demuxes and decodes every picture of a segment. Pictures
// this package cannot decode (other H.264 tools than I_PCM) are returned as
// nil with their PTS in pts, so callers can count them.
func DecodePictures(ts []byte) ([]*Picture, []time.Duration, error) {
	aus, err := demux(ts)
	if err != nil {
		return nil, nil, err
	}
	var sp seqParams
	pics := make([]*Picture, 0, len(aus))
	ptss := make([]time.Duration, 0, len(aus))
	for _, au := range aus {
		pts := time.Duration(au.pts) * time.Second / 90000
		var pic *Picture
		var picErr error
		for _, n := range nalUnits(au.data) {
			if len(n) == 0 {
				continue
			}
			typ, ref := n[0]&0x1F, n[0]>>5&3
			switch typ {
			case 7:
				if err := parseSPS(unescape(n[1:]), &sp); err != nil {
					picErr = err
				}
			case 8:
				if err := parsePPS(unescape(n[1:]), &sp); err != nil {
					picErr = err
				}
			case 1, 5:
				if pic == nil && picErr == nil {
					pic, picErr = decodeSlice(typ, ref, unescape(n[1:]), &sp)
				}
			}
		}
		if pic != nil {
			pic.PTS = pts
		}
		pics = append(pics, pic)
		ptss = append(ptss, pts)
	}
	return pics, ptss, nil
}

// Decode reads the frames of a segment: one Frame per access unit, in
// stream order. Work and memory are bounded by the input (MaxInput) and the
// picture size by the SPS bound (1920×1088).
func Decode(ts []byte) ([]Frame, error) {
	pics, ptss, err := DecodePictures(ts)
	if err != nil {
		return nil, err
	}
	frames := make([]Frame, len(pics))
	for i, p := range pics {
		frames[i].PTS = ptss[i]
		if p == nil {
			continue
		}
		frames[i].Number, frames[i].Transformed, frames[i].Intact = readStamp(p)
	}
	return frames, nil
}

// ErrNoPictures is returned by Transform for a segment with no decodable picture.
var ErrNoPictures = errors.New("livets: no decodable picture")

// Invert is the runner's transform of one picture: luma inverted (Y' =
// 255-Y), chroma kept. The stamp stays readable and reads Transformed.
func Invert(p *Picture) {
	// 255-v is v^0xFF for bytes; XORBytes does the plane in word steps.
	if mask := invertMask(); len(p.Y) <= len(mask) {
		subtle.XORBytes(p.Y, p.Y, mask[:len(p.Y)])
		return
	}
	for i, v := range p.Y {
		p.Y[i] = 255 - v
	}
}

// invertMask is 0xFF for the largest picture Decode accepts.
var invertMask = sync.OnceValue(func() []byte { return bytes.Repeat([]byte{0xFF}, maxMacroblocks*256) })

// Transform is the CPU live runner's visible transform of a whole segment:
// every picture inverted, PTS kept, remuxed at fps (0 = 30).
func Transform(ts []byte) ([]byte, error) {
	pics, _, err := DecodePictures(ts)
	if err != nil {
		return nil, fmt.Errorf("livets: transform: %w", err)
	}
	out := make([]*Picture, 0, len(pics))
	for _, p := range pics {
		if p != nil {
			Invert(p)
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoPictures
	}
	return Mux(fpsOf(out), out), nil
}

// fpsOf estimates the frame rate from the PTS steps (30 if unknown).
func fpsOf(pics []*Picture) int {
	if len(pics) < 2 {
		return 30
	}
	step := pics[1].PTS - pics[0].PTS
	if step <= 0 {
		return 30
	}
	return max(int((time.Second+step/2)/step), 1)
}
