package capability

// Bitstring encodes capability ids the way go-livepeer's
// Capabilities.bitstring does: capability N is bit N%64 of word N/64, and the
// slice is as long as the highest id needs.
func Bitstring(ids ...ID) []uint64 {
	var words []uint64
	for _, id := range ids {
		w := int(id / 64)
		for len(words) <= w {
			words = append(words, 0)
		}
		words[w] |= 1 << (id % 64)
	}
	return words
}

// Has reports whether capability id is set in a go-livepeer bitstring.
func Has(bits []uint64, id ID) bool {
	w := int(id / 64)
	return w < len(bits) && bits[w]&(1<<(id%64)) != 0
}

// Covers reports whether every bit set in need is set in offer: go-livepeer's
// compatibility rule for the binary part of Capabilities.
func Covers(offer, need []uint64) bool {
	for i, n := range need {
		var o uint64
		if i < len(offer) {
			o = offer[i]
		}
		if n&^o != 0 {
			return false
		}
	}
	return true
}

// IDs lists the capability ids set in a bitstring, ascending.
func IDs(bits []uint64) []ID {
	var ids []ID
	for w, word := range bits {
		for b := 0; b < 64; b++ {
			if word&(1<<b) != 0 {
				ids = append(ids, ID(w*64+b))
			}
		}
	}
	return ids
}

// DefaultIDs are go-livepeer's DefaultCapabilities (core/capabilities.go at
// 176aa415c): H.264, MPEG-TS, MP4, fractional frame rates, direct/S3/GCS
// storage, the four H.264 profiles, GOP, auth token, MPEG-7 video signature
// and segment slicing — capability ids 0..12, 14 and 26. A go-livepeer AI
// gateway asks for these plus the pipeline's bit, and an orchestrator that
// does not advertise all of them fails its CompatibleWith check
// (conformance vectors 01a, 03).
var DefaultIDs = []ID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26}
