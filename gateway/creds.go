package gateway

import (
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Header names and the AI protocol marker go-livepeer uses.
const (
	PaymentHeader      = "Livepeer-Payment"
	SegmentHeader      = "Livepeer-Segment"
	AuthorizationValue = "Livepeer-AI-Worker-1.0"
)

// ManifestID is the AI job's manifest id, "<capabilityID>_<modelID>".
func ManifestID(id capability.ID, model string) string {
	return fmt.Sprintf("%d_%s", id, model)
}

// SegDataMessage is what SegData.sig signs for an AI job: manifestID ‖
// seq (32 bytes) ‖ hash ‖ hex-encoded profiles (empty for AI).
func SegDataMessage(sd *lpnet.SegData) []byte {
	msg := append([]byte{}, sd.GetManifestId()...)
	msg = append(msg, common.LeftPadBytes(big.NewInt(sd.GetSeq()).Bytes(), 32)...)
	msg = append(msg, sd.GetHash()...)
	return msg
}

// SegData builds the Livepeer-Segment credentials for an AI job the way a
// go-livepeer gateway does from its dummy segment: seq 0, hash of the empty
// segment, profiles "invalid", the orchestrator's auth token echoed back.
// Without a signer (off-chain) the signature is empty.
func SegData(signer *pm.Signer, id capability.ID, model string, token *lpnet.AuthToken) (*lpnet.SegData, error) {
	sd := &lpnet.SegData{
		ManifestId:   []byte(ManifestID(id, model)),
		Seq:          0,
		Hash:         crypto.Keccak256(nil),
		Profiles:     []byte("invalid"),
		Capabilities: Capabilities(id, model),
		AuthToken:    token,
	}
	if signer != nil {
		sig, err := signer.SignKeccak(SegDataMessage(sd))
		if err != nil {
			return nil, fmt.Errorf("sign segment credentials: %w", err)
		}
		sd.Sig = sig
	}
	return sd, nil
}
