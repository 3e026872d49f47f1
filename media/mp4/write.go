// Package mp4 writes JPEG frames into an MP4 file (ISO/IEC 14496-12) as a
// Motion JPEG video track, so a binary without ffmpeg can still answer
// image-to-video with a video any player or ffprobe opens.
//
// The file is the smallest progressive layout: ftyp, then moov (one video
// track whose sample table puts every frame in one chunk), then mdat holding
// the JPEGs back to back. Every frame is a sync sample, so no stss box is
// written. Timing is exact: the timescale is the frame rate and each sample
// lasts one tick.
package mp4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Video is what Write muxes: frames as baseline JPEGs of Width×Height,
// shown FPS a second.
type Video struct {
	Width, Height int
	FPS           int
	Frames        [][]byte
}

// ErrInvalid is wrapped by every error Write returns for a Video it cannot
// express as an MP4.
var ErrInvalid = errors.New("mp4: invalid video")

// maxDimension is what the sample entry's 16-bit width and height hold.
const maxDimension = math.MaxUint16

// Write writes v as an MP4 file to w.
func Write(w io.Writer, v Video) error {
	if err := v.check(); err != nil {
		return err
	}
	moov := v.moov(0)
	// The chunk offset points past ftyp, moov and mdat's own header; moov's
	// size does not depend on the offset's value, so it is built twice.
	ftyp := ftypBox()
	offset := uint64(len(ftyp)) + uint64(len(moov)) + 8
	var payload uint64
	for _, f := range v.Frames {
		payload += uint64(len(f))
	}
	if offset+payload > math.MaxUint32 {
		return fmt.Errorf("%w: %d bytes of frames need 64-bit offsets", ErrInvalid, payload)
	}
	moov = v.moov(uint32(offset))
	mdatHeader := make([]byte, 8)
	binary.BigEndian.PutUint32(mdatHeader, uint32(8+payload))
	copy(mdatHeader[4:], "mdat")
	for _, b := range [][]byte{ftyp, moov, mdatHeader} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("mp4: write: %w", err)
		}
	}
	for _, f := range v.Frames {
		if _, err := w.Write(f); err != nil {
			return fmt.Errorf("mp4: write: %w", err)
		}
	}
	return nil
}

func (v Video) check() error {
	switch {
	case len(v.Frames) == 0:
		return fmt.Errorf("%w: no frames", ErrInvalid)
	case v.Width <= 0 || v.Height <= 0 || v.Width > maxDimension || v.Height > maxDimension:
		return fmt.Errorf("%w: size %dx%d", ErrInvalid, v.Width, v.Height)
	case v.FPS <= 0 || v.FPS > math.MaxInt32:
		return fmt.Errorf("%w: %d frames a second", ErrInvalid, v.FPS)
	case uint64(len(v.Frames)) > math.MaxUint32/4:
		return fmt.Errorf("%w: %d frames", ErrInvalid, len(v.Frames))
	}
	for i, f := range v.Frames {
		if len(f) == 0 {
			return fmt.Errorf("%w: frame %d is empty", ErrInvalid, i)
		}
	}
	return nil
}

// box is a file's bytes under construction; add appends one box to it.
type box []byte

func (b *box) u8(v uint8)   { *b = append(*b, v) }
func (b *box) u16(v uint16) { *b = binary.BigEndian.AppendUint16(*b, v) }
func (b *box) u32(v uint32) { *b = binary.BigEndian.AppendUint32(*b, v) }
func (b *box) zeros(n int)  { *b = append(*b, make([]byte, n)...) }

// full writes a FullBox's version and flags.
func (b *box) full(version uint8, flags uint32) { b.u32(uint32(version)<<24 | flags&0xffffff) }

// add appends a box of type typ holding what body writes, with its size.
func (b *box) add(typ string, body func(*box)) {
	start := len(*b)
	b.u32(0)
	*b = append(*b, typ...)
	body(b)
	binary.BigEndian.PutUint32((*b)[start:], uint32(len(*b)-start))
}

// matrix is the identity transformation in 16.16 and 2.30 fixed point.
func (b *box) matrix() {
	for _, v := range []uint32{0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000} {
		b.u32(v)
	}
}

func ftypBox() []byte {
	var b box
	b.add("ftyp", func(b *box) {
		*b = append(*b, "isom"...)
		b.u32(0x200)
		*b = append(*b, "isomiso2mp41"...)
	})
	return b
}

// moov builds the movie box with chunkOffset as the one chunk's offset.
func (v Video) moov(chunkOffset uint32) []byte {
	n := uint32(len(v.Frames))
	scale := uint32(v.FPS)
	var b box
	b.add("moov", func(b *box) {
		b.add("mvhd", func(b *box) {
			b.full(0, 0)
			b.u32(0) // creation time
			b.u32(0) // modification time
			b.u32(scale)
			b.u32(n)          // duration in ticks of 1/fps
			b.u32(0x00010000) // rate 1.0
			b.u16(0x0100)     // volume 1.0
			b.zeros(2 + 8)
			b.matrix()
			b.zeros(24) // pre_defined
			b.u32(2)    // next track ID
		})
		b.add("trak", func(b *box) {
			b.add("tkhd", func(b *box) {
				b.full(0, 0x3) // enabled, in movie
				b.u32(0)
				b.u32(0)
				b.u32(1) // track ID
				b.u32(0)
				b.u32(n) // duration, in mvhd's timescale
				b.zeros(8)
				b.u16(0) // layer
				b.u16(0) // alternate group
				b.u16(0) // volume: none for video
				b.u16(0)
				b.matrix()
				b.u32(uint32(v.Width) << 16) // 16.16 fixed point
				b.u32(uint32(v.Height) << 16)
			})
			b.add("mdia", func(b *box) {
				b.add("mdhd", func(b *box) {
					b.full(0, 0)
					b.u32(0)
					b.u32(0)
					b.u32(scale)
					b.u32(n)
					b.u16(0x55c4) // "und", three 5-bit letters
					b.u16(0)
				})
				b.add("hdlr", func(b *box) {
					b.full(0, 0)
					b.u32(0)
					*b = append(*b, "vide"...)
					b.zeros(12)
					*b = append(*b, "VideoHandler\x00"...)
				})
				b.add("minf", func(b *box) {
					b.add("vmhd", func(b *box) {
						b.full(0, 1)
						b.zeros(8) // graphics mode, opcolor
					})
					b.add("dinf", func(b *box) {
						b.add("dref", func(b *box) {
							b.full(0, 0)
							b.u32(1)
							b.add("url ", func(b *box) { b.full(0, 1) }) // media in this file
						})
					})
					b.add("stbl", func(b *box) { v.stbl(b, chunkOffset) })
				})
			})
		})
	})
	return b
}

func (v Video) stbl(b *box, chunkOffset uint32) {
	n := uint32(len(v.Frames))
	b.add("stsd", func(b *box) {
		b.full(0, 0)
		b.u32(1)
		// "jpeg" is the Motion JPEG (Photo-JPEG) sample entry ffmpeg and
		// QuickTime read; its body is a plain VisualSampleEntry.
		b.add("jpeg", func(b *box) {
			b.zeros(6)
			b.u16(1) // data reference index
			b.zeros(16)
			b.u16(uint16(v.Width))
			b.u16(uint16(v.Height))
			b.u32(0x00480000) // 72 dpi
			b.u32(0x00480000)
			b.u32(0)
			b.u16(1) // frames per sample
			name := "Motion JPEG"
			b.u8(uint8(len(name)))
			*b = append(*b, name...)
			b.zeros(31 - len(name))
			b.u16(0x18)   // depth: colour, no alpha
			b.u16(0xffff) // pre_defined -1
		})
	})
	b.add("stts", func(b *box) {
		b.full(0, 0)
		b.u32(1)
		b.u32(n)
		b.u32(1) // each frame lasts one tick of 1/fps
	})
	b.add("stsc", func(b *box) {
		b.full(0, 0)
		b.u32(1)
		b.u32(1) // from the first chunk on
		b.u32(n) // every sample is in it
		b.u32(1) // sample description index
	})
	b.add("stsz", func(b *box) {
		b.full(0, 0)
		b.u32(0) // sizes vary
		b.u32(n)
		for _, f := range v.Frames {
			b.u32(uint32(len(f)))
		}
	})
	b.add("stco", func(b *box) {
		b.full(0, 0)
		b.u32(1)
		b.u32(chunkOffset)
	})
}
