package pm

import (
	"errors"
	"math"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Expected hashes are go-livepeer's own (pm/ticket_test.go TestHash).
func TestTicketHashKnownAnswers(t *testing.T) {
	randHash := common.HexToHash("41b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d")
	tests := []struct {
		name   string
		ticket Ticket
		want   string
	}{
		{"max nonce", Ticket{FaceValue: big.NewInt(0), WinProb: big.NewInt(0), SenderNonce: math.MaxUint32}, "e1393fc7f6de093780674022f96cb8e3872235167d037c04d554e58c0e63d280"},
		{"nonce 1", Ticket{FaceValue: big.NewInt(0), WinProb: big.NewInt(0), SenderNonce: 1}, "ce0918ba94518293e9712effbe5fca4f1f431089833a5b8c257cb1e024595f68"},
		{"face 1 winProb 500", Ticket{FaceValue: big.NewInt(1), WinProb: big.NewInt(500)}, "87ef13f2d37e4d5352a01d3c77b8179d80e0887f1953bfabfd0bfd7b0f689ddd"},
		{"face 500 winProb 1", Ticket{FaceValue: big.NewInt(500), WinProb: big.NewInt(1)}, "aa4b35071043587992ac8b9dd1b2cf1d8311130e6458cf0b2342484e21af5f5b"},
		{"recipient", Ticket{Recipient: common.HexToAddress("73AEd7b5dEb30222fa896f399d46cC99c7BEe57F"), FaceValue: big.NewInt(0), WinProb: big.NewInt(0)}, "81e353ae39046e2b77b9f996abbaeed527fda559b61ef90f299c4499dd508ccc"},
		{"recipient rand hash", Ticket{FaceValue: big.NewInt(0), WinProb: big.NewInt(0), RecipientRandHash: randHash}, "be5eaf9a49a39540b9bb02f1a21904f61324a29819e2c032824bfaa10c100b17"},
		{"aux data", Ticket{FaceValue: big.NewInt(0), WinProb: big.NewInt(0), CreationRound: 10, CreationRoundBlockHash: randHash}, "e502907c16036ab3d11b78c5a2e93c20f3d6415c67f91de4ed01348182b3b2e2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ticket.Hash(); got != common.HexToHash(tt.want) {
				t.Fatalf("Hash = %x, want %s", got, tt.want)
			}
		})
	}
}

// Expected aux data from go-livepeer pm/ticket_test.go TestAuxData.
func TestAuxDataKnownAnswers(t *testing.T) {
	blk := common.HexToHash("7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f")
	tests := []struct {
		round int64
		hash  common.Hash
		want  string
	}{
		{0, blk, "00000000000000000000000000000000000000000000000000000000000000007624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f"},
		{5, common.Hash{}, "00000000000000000000000000000000000000000000000000000000000000050000000000000000000000000000000000000000000000000000000000000000"},
		{0, common.Hash{}, ""},
		{5, blk, "00000000000000000000000000000000000000000000000000000000000000057624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f"},
	}
	for _, tt := range tests {
		got := (&Ticket{CreationRound: tt.round, CreationRoundBlockHash: tt.hash}).AuxData()
		if common.Bytes2Hex(got) != tt.want {
			t.Errorf("AuxData(%d,%x) = %x, want %s", tt.round, tt.hash, got, tt.want)
		}
	}
}

// Expected values from go-livepeer pm/ticket_test.go TestEV.
func TestEV(t *testing.T) {
	half := new(big.Int).Div(MaxWinProb, big.NewInt(2))
	tests := []struct {
		face, prob *big.Int
		want       string
	}{
		{big.NewInt(1000), half, "500"},
		{big.NewInt(1000), big.NewInt(0), "0"},
		{big.NewInt(1000), MaxWinProb, "1000"},
		{big.NewInt(0), big.NewInt(999), "0"},
	}
	for _, tt := range tests {
		if got := EV(tt.face, tt.prob).FloatString(0); got != tt.want {
			t.Errorf("EV(%v, %v) = %s, want %s", tt.face, tt.prob, got, tt.want)
		}
	}
}

// Known answers from go-livepeer crypto/verify_test.go.
func TestRecoverKnownAnswers(t *testing.T) {
	addr := common.HexToAddress("3BadDb1eeE2105893136A3F96c8a963E9C6309d6")
	msg := common.FromHex("b7da355477356fc4c47fcabcf232dc77a6db9b07b7e48b76261cc55cc8fbabb3")
	sig := common.FromHex("206443228e8f784bc3a122de0d85eb3ebff82d6a79cca26c7eeb907099a6404f6dff57bc6828f28bd6cd073c89d94cf3364204679ed8365fa45b5ee6af19a9841c")
	highS := common.FromHex("e742ff452d41413616a5bf43fe15dd88294e983d3d36206c2712f39083d638bde0a0fc89be718fbc1033e1d30d78be1c68081562ed2e97af876f286f3453231d1b")

	if err := Verify(addr, msg, sig); err != nil {
		t.Fatalf("Verify known signature: %v", err)
	}
	if err := Verify(addr, common.FromHex("f00d"), sig); !errors.Is(err, ErrSigSigner) {
		t.Errorf("other message: %v, want ErrSigSigner", err)
	}
	if _, err := Recover(msg, sig[:64]); !errors.Is(err, ErrSigLength) {
		t.Errorf("short sig: %v", err)
	}
	if _, err := Recover(msg, highS); !errors.Is(err, ErrSigHighS) {
		t.Errorf("high S: %v", err)
	}
	badV := append([]byte{}, sig...)
	badV[64] = 1
	if _, err := Recover(msg, badV); !errors.Is(err, ErrSigV) {
		t.Errorf("v=1: %v", err)
	}
}

func TestSignerRoundTrip(t *testing.T) {
	key, _ := crypto.GenerateKey()
	s := NewSigner(key)
	msg := []byte(s.Address().Hex())
	sig, err := s.SignKeccak(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
		t.Fatalf("sig shape: len %d v %d", len(sig), sig[64])
	}
	if err := VerifyKeccak(s.Address(), msg, sig); err != nil {
		t.Fatal(err)
	}
	other, _ := crypto.GenerateKey()
	if err := VerifyKeccak(crypto.PubkeyToAddress(other.PublicKey), msg, sig); !errors.Is(err, ErrSigSigner) {
		t.Fatalf("wrong address accepted: %v", err)
	}
}

func TestIsWinning(t *testing.T) {
	sig := make([]byte, 65)
	rand := big.NewInt(7)
	h := new(big.Int).SetBytes(crypto.Keccak256(sig, common.LeftPadBytes(rand.Bytes(), 32)))
	if IsWinning(sig, rand, h) {
		t.Error("hash == winProb must lose (strict <)")
	}
	if !IsWinning(sig, rand, new(big.Int).Add(h, big.NewInt(1))) {
		t.Error("hash < winProb must win")
	}
	if !IsWinning(sig, rand, MaxWinProb) && h.Cmp(MaxWinProb) < 0 {
		t.Error("max win prob must win")
	}
	if IsWinning(sig, rand, big.NewInt(0)) {
		t.Error("zero win prob never wins")
	}
	if RandHash(rand) != crypto.Keccak256Hash(common.LeftPadBytes([]byte{7}, 32)) {
		t.Error("RandHash must hash the 32-byte left-padded value")
	}
}
