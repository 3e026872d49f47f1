package livets

import (
	"errors"
	"fmt"
)

// MPEG-TS (ISO/IEC 13818-1) as the live path carries it: 188-byte packets,
// PAT on PID 0, one PMT, one H.264 stream (stream_type 0x1B) that also
// carries the PCR, one PES per access unit with a 90 kHz PTS.

const (
	packetSize = 188
	pidPAT     = 0x0000
	pidPMT     = 0x1000
	pidVideo   = 0x0100
	streamH264 = 0x1B
)

type muxer struct {
	out []byte
	cc  map[uint16]byte
}

func (m *muxer) packet(pid uint16, start bool, adapt []byte, payload []byte) int {
	// Room for payload after the 4-byte header and the adaptation field.
	room := packetSize - 4
	if adapt != nil {
		room -= 1 + len(adapt)
	}
	n := min(len(payload), room)
	stuff := room - n
	if stuff > 0 && adapt == nil {
		// Stuffing needs an adaptation field: its length byte takes one.
		adapt = []byte{}
		stuff--
		if stuff > 0 {
			adapt = append(adapt, 0x00) // flags
			stuff--
		}
	} else if stuff > 0 && len(adapt) == 0 {
		adapt = append(adapt, 0x00)
		stuff--
	}
	for ; stuff > 0; stuff-- {
		adapt = append(adapt, 0xFF)
	}
	h := []byte{0x47, byte(pid>>8) & 0x1F, byte(pid), 0}
	if start {
		h[1] |= 0x40
	}
	ctrl := byte(0x10)
	if adapt != nil {
		ctrl = 0x30
	}
	h[3] = ctrl | m.cc[pid]&0x0F
	m.cc[pid] = (m.cc[pid] + 1) & 0x0F
	m.out = append(m.out, h...)
	if adapt != nil {
		m.out = append(m.out, byte(len(adapt)))
		m.out = append(m.out, adapt...)
	}
	m.out = append(m.out, payload[:n]...)
	return n
}

func crc32MPEG(b []byte) uint32 {
	crc := uint32(0xFFFFFFFF)
	for _, v := range b {
		crc ^= uint32(v) << 24
		for i := 0; i < 8; i++ {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04C11DB7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func (m *muxer) section(pid uint16, sec []byte) {
	crc := crc32MPEG(sec)
	sec = append(sec, byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc))
	payload := append([]byte{0}, sec...) // pointer_field
	for len(payload) < packetSize-4 {
		payload = append(payload, 0xFF)
	}
	m.packet(pid, true, nil, payload)
}

func (m *muxer) tables() {
	// PAT: program 1 → PMT PID.
	m.section(pidPAT, []byte{0x00, 0xB0, 13, 0x00, 0x01, 0xC1, 0x00, 0x00,
		0x00, 0x01, 0xE0 | pidPMT>>8, pidPMT & 0xFF})
	// PMT: PCR on the video PID, one H.264 stream.
	m.section(pidPMT, []byte{0x02, 0xB0, 18, 0x00, 0x01, 0xC1, 0x00, 0x00,
		0xE0 | pidVideo>>8, pidVideo & 0xFF, 0xF0, 0x00,
		streamH264, 0xE0 | pidVideo>>8, pidVideo & 0xFF, 0xF0, 0x00})
}

func putTimestamp(b []byte, marker byte, ts uint64) {
	b[0] = marker<<4 | byte(ts>>29)&0x0E | 1
	b[1] = byte(ts >> 22)
	b[2] = byte(ts>>14) | 1
	b[3] = byte(ts >> 7)
	b[4] = byte(ts<<1) | 1
}

// pes writes one access unit with its PTS; the first packet carries the PCR
// and the random access indicator.
func (m *muxer) pes(au []byte, pts90k uint64, pcr90k uint64) {
	hdr := []byte{0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5, 0, 0, 0, 0, 0}
	putTimestamp(hdr[9:14], 2, pts90k)
	payload := append(hdr, au...)
	pcr := make([]byte, 7)
	pcr[0] = 0x50 // random_access_indicator, PCR_flag
	base := pcr90k & (1<<33 - 1)
	pcr[1] = byte(base >> 25)
	pcr[2] = byte(base >> 17)
	pcr[3] = byte(base >> 9)
	pcr[4] = byte(base >> 1)
	pcr[5] = byte(base<<7) | 0x7E
	pcr[6] = 0
	n := m.packet(pidVideo, true, pcr, payload)
	payload = payload[n:]
	for len(payload) > 0 {
		n = m.packet(pidVideo, false, nil, payload)
		payload = payload[n:]
	}
}

// accessUnit is one PES of the video stream, as demuxed.
type accessUnit struct {
	pts  uint64
	data []byte
}

// MaxInput bounds what Decode and Transform accept (a live segment is a few
// seconds; 64 MiB is far above any this package writes).
const MaxInput = 64 << 20

var errNotTS = errors.New("livets: not an MPEG-TS stream")

// demux returns the access units of the first H.264 stream. Work is linear in
// len(ts) and never allocates more than len(ts) in payloads.
func demux(ts []byte) ([]accessUnit, error) {
	if len(ts) > MaxInput {
		return nil, fmt.Errorf("livets: %d bytes is over the %d-byte bound", len(ts), MaxInput)
	}
	if len(ts) < packetSize || ts[0] != 0x47 {
		return nil, errNotTS
	}
	pmtPID, videoPID := -1, -1
	var aus []accessUnit
	var cur []byte
	flush := func() {
		if cur == nil {
			return
		}
		if au, ok := parsePES(cur); ok {
			aus = append(aus, au)
		}
		cur = nil
	}
	for off := 0; off+packetSize <= len(ts); off += packetSize {
		p := ts[off : off+packetSize]
		if p[0] != 0x47 {
			return nil, fmt.Errorf("livets: lost sync at byte %d", off)
		}
		pid := int(p[1]&0x1F)<<8 | int(p[2])
		start := p[1]&0x40 != 0
		ctrl := p[3] >> 4 & 3
		body := p[4:]
		if ctrl&2 != 0 {
			al := int(body[0])
			if al > len(body)-1 {
				continue
			}
			body = body[1+al:]
		}
		if ctrl&1 == 0 {
			continue
		}
		switch {
		case pid == pidPAT && start:
			if sec, ok := section(body); ok && len(sec) >= 12 {
				pmtPID = int(sec[10]&0x1F)<<8 | int(sec[11])
			}
		case pid == pmtPID && start:
			if sec, ok := section(body); ok && len(sec) >= 12 {
				info := int(sec[10]&0x0F)<<8 | int(sec[11])
				end := min(3+(int(sec[1]&0x0F)<<8|int(sec[2])), len(sec)) - 4
				for i := 12 + info; i+5 <= end; {
					esPID := int(sec[i+1]&0x1F)<<8 | int(sec[i+2])
					if sec[i] == streamH264 && videoPID < 0 {
						videoPID = esPID
					}
					i += 5 + (int(sec[i+3]&0x0F)<<8 | int(sec[i+4]))
				}
			}
		case pid == videoPID:
			if start {
				flush()
				cur = []byte{}
			}
			if cur != nil {
				cur = append(cur, body...)
			}
		}
	}
	flush()
	if videoPID < 0 {
		return nil, errors.New("livets: no H.264 stream in the PMT")
	}
	return aus, nil
}

func section(body []byte) ([]byte, bool) {
	if len(body) < 1 || int(body[0])+1 > len(body) {
		return nil, false
	}
	return body[1+int(body[0]):], true
}

func parsePES(b []byte) (accessUnit, bool) {
	if len(b) < 9 || b[0] != 0 || b[1] != 0 || b[2] != 1 {
		return accessUnit{}, false
	}
	hl := int(b[8])
	if 9+hl > len(b) {
		return accessUnit{}, false
	}
	var pts uint64
	if b[7]&0x80 != 0 && hl >= 5 {
		t := b[9:14]
		pts = uint64(t[0]>>1&7)<<30 | uint64(t[1])<<22 | uint64(t[2]>>1)<<15 | uint64(t[3])<<7 | uint64(t[4]>>1)
	}
	return accessUnit{pts: pts, data: b[9+hl:]}, true
}

// nalUnits splits an Annex-B access unit.
func nalUnits(au []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+2 < len(au); i++ {
		if au[i] == 0 && au[i+1] == 0 && au[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && au[end-1] == 0 {
					end--
				}
				out = append(out, au[start:end])
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 && start < len(au) {
		out = append(out, au[start:])
	}
	return out
}
