package pm

import (
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// fuzzSigner has a fixed key so seeds are the same on every run.
func fuzzSigner(tb testing.TB) *Signer {
	key, err := crypto.ToECDSA(common.FromHex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))
	if err != nil {
		tb.Fatal(err)
	}
	return NewSigner(key)
}

// realHeaders are a Livepeer-Payment with two signed tickets and a
// Livepeer-Segment as a go-livepeer gateway sends them for an AI job.
func realHeaders(tb testing.TB) (payment, segment string) {
	s := NewSender(fuzzSigner(tb))
	tp := &lpnet.TicketParams{
		Recipient:         common.HexToAddress("0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F").Bytes(),
		FaceValue:         big.NewInt(1e12).Bytes(),
		WinProb:           new(big.Int).Lsh(big.NewInt(1), 250).Bytes(),
		RecipientRandHash: crypto.Keccak256([]byte("rand")),
		Seed:              []byte{1, 2, 3},
		ExpirationBlock:   big.NewInt(1000).Bytes(),
		ExpirationParams:  &lpnet.TicketExpirationParams{CreationRound: 7, CreationRoundBlockHash: crypto.Keccak256([]byte("block"))},
	}
	p, err := s.Payment(tp, &lpnet.PriceInfo{PricePerUnit: 4768371, PixelsPerUnit: 1}, 2)
	if err != nil {
		tb.Fatal(err)
	}
	if payment, err = EncodeHeader(p); err != nil {
		tb.Fatal(err)
	}
	sd := &lpnet.SegData{
		ManifestId: []byte("27_ByteDance/SDXL-Lightning"), Hash: crypto.Keccak256(nil), Profiles: []byte("invalid"),
		Capabilities: &lpnet.Capabilities{Bitstring: []uint64{1 << 27}},
		AuthToken:    &lpnet.AuthToken{Token: []byte("t"), SessionId: "s", Expiration: 1764000000},
	}
	sd.Sig, err = s.Signer().SignKeccak(sd.GetManifestId())
	if err != nil {
		tb.Fatal(err)
	}
	if segment, err = EncodeHeader(sd); err != nil {
		tb.Fatal(err)
	}
	return payment, segment
}

// FuzzDecodeHeader feeds Livepeer-Payment and Livepeer-Segment header values
// to DecodeHeader and what comes out to Tickets and signature recovery. It
// must never panic; a header over the limit is refused by its length alone;
// what decodes re-encodes to an equal message.
func FuzzDecodeHeader(f *testing.F) {
	payment, segment := realHeaders(f)
	for _, s := range []string{
		payment, segment, "", "=", "AAAA", "not base64!", "CgA=", "////",
		base64.StdEncoding.EncodeToString([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}), // length prefix far past the end
		base64.StdEncoding.EncodeToString([]byte{0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}),
		base64.RawStdEncoding.EncodeToString([]byte("unpadded")),
		strings.Repeat("A", base64.StdEncoding.EncodedLen(MaxHeaderBytes)+4),
	} {
		f.Add(s)
	}
	sender := fuzzSigner(f).Address()
	f.Fuzz(func(t *testing.T, h string) {
		var p lpnet.Payment
		perr := DecodeHeader(h, &p)
		var sd lpnet.SegData
		serr := DecodeHeader(h, &sd)
		if len(h) > base64.StdEncoding.EncodedLen(MaxHeaderBytes) {
			if perr == nil || serr == nil || !strings.Contains(perr.Error(), "limit") {
				t.Fatalf("%d-byte header accepted (%v, %v)", len(h), perr, serr)
			}
			return
		}
		if perr == nil {
			roundTrip(t, &p, &lpnet.Payment{})
			tickets, sigs, err := Tickets(&p)
			if err == nil {
				if len(tickets) != len(p.GetTicketSenderParams()) || len(sigs) != len(tickets) {
					t.Fatalf("%d tickets and %d sigs from %d sender params", len(tickets), len(sigs), len(p.GetTicketSenderParams()))
				}
				for i, tk := range tickets {
					_ = tk.Hash()
					_ = tk.EV()
					_ = Verify(tk.Sender, tk.Hash().Bytes(), sigs[i])
				}
			}
		}
		if serr == nil {
			roundTrip(t, &sd, &lpnet.SegData{})
			_ = VerifyKeccak(sender, sd.GetManifestId(), sd.GetSig())
		}
	})
}

func roundTrip(t *testing.T, m, empty proto.Message) {
	t.Helper()
	h, err := EncodeHeader(m)
	if err != nil {
		t.Fatalf("decoded %T does not re-encode: %v", m, err)
	}
	if err := DecodeHeader(h, empty); err != nil {
		t.Fatalf("re-encoded %T does not decode: %v", m, err)
	}
	if !proto.Equal(m, empty) {
		t.Fatalf("%T changed in a round trip:\n%v\n%v", m, m, empty)
	}
}

// A header just over the limit is refused without being decoded, even when
// it is a valid message; one at the limit is decoded.
func TestDecodeHeaderRefusesOversizeBeforeDecoding(t *testing.T) {
	big := &lpnet.SegData{ManifestId: make([]byte, MaxHeaderBytes)} // encodes to a few bytes more than the limit
	h, err := EncodeHeader(big)
	if err != nil {
		t.Fatal(err)
	}
	var sd lpnet.SegData
	if err := DecodeHeader(h, &sd); err == nil || !strings.Contains(err.Error(), "limit") || sd.ManifestId != nil {
		t.Fatalf("oversize valid header: err %v, decoded %d bytes", err, len(sd.ManifestId))
	}
	fits := &lpnet.SegData{ManifestId: make([]byte, MaxHeaderBytes-16)}
	if h, err = EncodeHeader(fits); err != nil {
		t.Fatal(err)
	}
	if err := DecodeHeader(h, &sd); err != nil || len(sd.ManifestId) != MaxHeaderBytes-16 {
		t.Fatalf("header under the limit: %v", err)
	}
}
