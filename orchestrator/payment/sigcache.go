package payment

import (
	"sync"
	"sync/atomic"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// verifiedSigs remembers the segment credentials whose signature verified,
// so the public-key recovery (the costliest step of a job's admission on
// chain) runs once per (sender, message, signature) instead of on every
// Check. A go-livepeer gateway's AI segment credentials are the same bytes
// for every job of a (pipeline, model) — seq 0, the empty segment's hash,
// the session's auth token — and Check runs once per served model before
// the body is read and again after decoding, so on chain every job
// recovered the sender two or more times.
//
// Recovery is a pure function of the three values in the key, so a hit
// answers exactly what recovering again would: a different sender, message
// or signature byte is a miss and is verified in full. Only successes are
// kept (a bad signature costs a recovery each time, as before), and the
// set is emptied when it reaches maxVerifiedSigs, so memory stays bounded
// whatever senders send; emptying costs only recoveries again.
type verifiedSigs struct {
	mu   sync.Mutex
	seen map[sigKey]struct{}
	// recovered counts full verifications, for tests.
	recovered atomic.Int64
}

type sigKey struct {
	sender common.Address
	hash   common.Hash // keccak256 of the signed message
	sig    [65]byte
}

// maxVerifiedSigs bounds the set: ~150 bytes an entry, 0.6 MB in all; one
// entry per (gateway, pipeline, model) in use.
const maxVerifiedSigs = 4096

// verifyKeccak is pm.VerifyKeccak(sender, msg, sig), answered from the set
// when these exact values verified before.
func (v *verifiedSigs) verifyKeccak(sender common.Address, msg, sig []byte) error {
	hash := crypto.Keccak256Hash(msg)
	if len(sig) != 65 {
		v.recovered.Add(1)
		return pm.Verify(sender, hash[:], sig) // says what is wrong with it
	}
	k := sigKey{sender: sender, hash: hash}
	copy(k.sig[:], sig)
	v.mu.Lock()
	_, ok := v.seen[k]
	v.mu.Unlock()
	if ok {
		return nil
	}
	v.recovered.Add(1)
	if err := pm.Verify(sender, hash[:], sig); err != nil {
		return err
	}
	v.mu.Lock()
	if v.seen == nil || len(v.seen) >= maxVerifiedSigs {
		v.seen = make(map[sigKey]struct{})
	}
	v.seen[k] = struct{}{}
	v.mu.Unlock()
	return nil
}

// decodedSegs remembers decoded Livepeer-Segment headers by their text:
// the same credentials come on every job of a (gateway, pipeline, model)
// and are asked about twice or more per job, and decoding them (base64,
// then protobuf with the capability constraint maps) cost more than the
// rest of Check. Decoding is a pure function of the text, so a hit is the
// message a fresh decode would give; a message in the set is shared, and
// nothing may change it (Check and the admission only read it). Headers
// over maxCachedSegHeader are decoded every time, and the set is emptied
// when it holds maxDecodedSegs, so it stays under ~8 MB.
type decodedSegs struct {
	mu sync.Mutex
	m  map[string]*lpnet.SegData
}

const (
	maxDecodedSegs     = 1024
	maxCachedSegHeader = 8 << 10
)

// decode is pm.DecodeHeader(h, new SegData), answered from the set when h
// was decoded before. The result is read-only.
func (d *decodedSegs) decode(h string) (*lpnet.SegData, error) {
	cache := len(h) <= maxCachedSegHeader
	if cache {
		d.mu.Lock()
		sd := d.m[h]
		d.mu.Unlock()
		if sd != nil {
			return sd, nil
		}
	}
	sd := new(lpnet.SegData)
	if err := pm.DecodeHeader(h, sd); err != nil {
		return nil, err
	}
	if cache {
		d.mu.Lock()
		if d.m == nil || len(d.m) >= maxDecodedSegs {
			d.m = make(map[string]*lpnet.SegData)
		}
		d.m[h] = sd
		d.mu.Unlock()
	}
	return sd, nil
}
