package mp4

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Info is what a viewer notices of an MP4 (ISO/IEC 14496-12): the
// first video track's size, frame count and length.
type Info struct {
	Width, Height int     // tkhd, the displayed size
	Frames        uint64  // stsz sample count
	Seconds       float64 // mdhd duration / timescale
}

// Parse walks an MP4's boxes in place: ftyp first, every box inside its
// parent and the top-level boxes covering the file exactly (so a truncated
// download fails), a moov holding a video track (hdlr "vide") with tkhd,
// mdhd, stsd and a sample table whose sizes and chunk offsets lie inside the
// file. It allocates nothing whatever the declared sizes and counts say: a
// hostile file costs what it weighs. Fragmented MP4s (samples in moof
// boxes, none in stsz) are not read: a file with no samples is refused.
func Parse(b []byte) (Info, error) {
	var v Info
	if len(b) < 8 || string(b[4:8]) != "ftyp" {
		return v, fmt.Errorf("first box is not ftyp: starts %q", b[:min(len(b), 8)])
	}
	var moov []byte
	for rest := b; len(rest) > 0; {
		typ, body, next, err := nextBox(rest)
		if err != nil {
			return v, err
		}
		rest = next
		if string(typ) == "moov" && moov == nil {
			moov = body
		}
	}
	if moov == nil {
		return v, errors.New("no moov box")
	}
	for rest := moov; len(rest) > 0; {
		typ, trak, next, err := nextBox(rest)
		if err != nil {
			return v, fmt.Errorf("moov: %w", err)
		}
		rest = next
		if string(typ) != "trak" {
			continue
		}
		hdlr, err := child(trak, "mdia", "hdlr")
		if err != nil {
			return v, err
		}
		if len(hdlr) < 12 || string(hdlr[8:12]) != "vide" {
			continue
		}
		return parseVideoTrack(trak, len(b))
	}
	return v, errors.New("no video track")
}

func parseVideoTrack(trak []byte, fileSize int) (Info, error) {
	var v Info
	be := binary.BigEndian
	tkhd, err := child(trak, "tkhd")
	if err != nil {
		return v, err
	}
	// After version and flags: times, track ID, duration (32 or 64-bit),
	// reserved, layer, group, volume, matrix, then width and height.
	at := 76
	if tkhd[0] == 1 {
		at = 88
	}
	if len(tkhd) < at+8 {
		return v, errors.New("tkhd: short box")
	}
	v.Width, v.Height = int(be.Uint32(tkhd[at:])>>16), int(be.Uint32(tkhd[at+4:])>>16)

	mdhd, err := child(trak, "mdia", "mdhd")
	if err != nil {
		return v, err
	}
	var scale uint32
	var dur uint64
	switch {
	case mdhd[0] == 1 && len(mdhd) >= 32:
		scale, dur = be.Uint32(mdhd[20:]), be.Uint64(mdhd[24:])
	case mdhd[0] == 0 && len(mdhd) >= 20:
		scale, dur = be.Uint32(mdhd[12:]), uint64(be.Uint32(mdhd[16:]))
	default:
		return v, errors.New("mdhd: short box")
	}
	if scale == 0 {
		return v, errors.New("mdhd: timescale 0")
	}
	v.Seconds = float64(dur) / float64(scale)

	stbl, err := child(trak, "mdia", "minf", "stbl")
	if err != nil {
		return v, err
	}
	stsd, err := child(stbl, "stsd")
	if err != nil {
		return v, err
	}
	if len(stsd) < 16 || be.Uint32(stsd[4:]) == 0 {
		return v, errors.New("stsd: no sample entry")
	}
	stsz, err := child(stbl, "stsz")
	if err != nil {
		return v, err
	}
	if len(stsz) < 12 {
		return v, errors.New("stsz: short box")
	}
	fixed, n := uint64(be.Uint32(stsz[4:])), uint64(be.Uint32(stsz[8:]))
	if n == 0 {
		return v, errors.New("no samples (a fragmented MP4?)")
	}
	var total uint64
	if fixed != 0 {
		total = fixed * n
	} else {
		if uint64(len(stsz)-12) < 4*n {
			return v, fmt.Errorf("stsz: %d sizes declared, room for %d", n, (len(stsz)-12)/4)
		}
		for i := range n {
			total += uint64(be.Uint32(stsz[12+4*i:]))
		}
	}
	if total > uint64(fileSize) {
		return v, fmt.Errorf("samples total %d bytes, the file has %d", total, fileSize)
	}
	if err := checkChunkOffsets(stbl, fileSize); err != nil {
		return v, err
	}
	v.Frames = n
	return v, nil
}

// checkChunkOffsets refuses a track with no chunk or one that starts past
// the end of the file.
func checkChunkOffsets(stbl []byte, fileSize int) error {
	be := binary.BigEndian
	width := 4
	co, err := child(stbl, "stco")
	if err != nil {
		if co, err = child(stbl, "co64"); err != nil {
			return errors.New("no stco or co64 box")
		}
		width = 8
	}
	if len(co) < 8 {
		return errors.New("chunk offsets: short box")
	}
	n := uint64(be.Uint32(co[4:]))
	if n == 0 || uint64(len(co)-8) < uint64(width)*n {
		return fmt.Errorf("chunk offsets: %d declared, room for %d", n, (len(co)-8)/width)
	}
	for i := range n {
		var off uint64
		if width == 4 {
			off = uint64(be.Uint32(co[8+4*i:]))
		} else {
			off = be.Uint64(co[8+8*i:])
		}
		if off >= uint64(fileSize) {
			return fmt.Errorf("chunk %d at %d, past the file's %d bytes", i, off, fileSize)
		}
	}
	return nil
}

// child returns the body of the first box at path below the boxes in b.
// Full boxes' bodies start with their version and flags.
func child(b []byte, path ...string) ([]byte, error) {
	for depth, want := range path {
		found := false
		for rest := b; len(rest) > 0 && !found; {
			typ, body, next, err := nextBox(rest)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path[max(depth-1, 0)], err)
			}
			if string(typ) == want {
				b, found = body, true
			}
			rest = next
		}
		if !found {
			return nil, fmt.Errorf("no %s box", want)
		}
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%s: short box", path[len(path)-1])
	}
	return b, nil
}

// nextBox splits the box at the start of b from what follows it; typ is a
// slice of b (comparing string(typ) costs no allocation). A size of 0 runs
// to the end of b; 1 means a 64-bit size follows the type.
func nextBox(b []byte) (typ, body, rest []byte, err error) {
	if len(b) < 8 {
		return nil, nil, nil, fmt.Errorf("truncated box header (%d bytes)", len(b))
	}
	size, header := uint64(binary.BigEndian.Uint32(b)), uint64(8)
	typ = b[4:8]
	switch size {
	case 0:
		size = uint64(len(b))
	case 1:
		if len(b) < 16 {
			return nil, nil, nil, fmt.Errorf("%q: truncated 64-bit size", typ)
		}
		size, header = binary.BigEndian.Uint64(b[8:]), 16
	}
	if size < header || size > uint64(len(b)) {
		return nil, nil, nil, fmt.Errorf("%q box of %d bytes with %d left (truncated or corrupt)", typ, size, len(b))
	}
	return typ, b[header:size], b[size:], nil
}
