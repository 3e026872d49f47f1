// Package identity decides whether the tester may store an orchestrator's
// results under the address the orchestrator names for itself.
//
// A go-livepeer gateway learns an orchestrator's address from the
// orchestrator: the webhook lists service URIs only ([{"address":"<uri>",
// "score":…}], go-livepeer discovery/wh_discovery.go:21-24 and 206-226), and
// the address is OrchestratorInfo.address from GetOrchestrator (server/
// rpc.go:639, the node's own account, core/orchestrator.go:547-555) or
// ticket_params.recipient (discovery/db_discovery.go:424 and 628). Neither
// is signed: OrchestratorInfo carries no signature (net/lp_rpc.proto:154-166),
// and a recipient is only where tickets pay. So an orchestrator listed by a
// webhook (or a static entry without an address) can name any address, and
// the tester would store its failures on someone else's record.
//
// The proof asked for is go-livepeer's own: Ping. Its orchestrator
// personal-signs keccak256 of the gateway's value with the key of the
// address it reports (server/rpc.go:380-388, core/orchestrator.go:63-68).
// The tester sends a fresh random 32-byte value each discovery and stores
// rows under the claimed address only when the answer recovers to it. On
// chain discovery the address comes from the pool and the URL probed is the
// one that address registered in the ServiceRegistry, so the chain is the
// proof and no Ping is needed.
package identity

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
)

// Reasons an address is not proven (the reason label of Unproven).
const (
	// ReasonPingFailed: the Ping call failed (unreachable, unimplemented).
	ReasonPingFailed = "ping_failed"
	// ReasonUnsigned: Ping answered no signature, as an off-chain
	// go-livepeer orchestrator does: nothing ties it to the address.
	ReasonUnsigned = "unsigned"
	// ReasonOtherSigner: the signature is malformed or made by another key.
	ReasonOtherSigner = "other_signer"
)

// ErrUnproven is returned by Prove when the orchestrator did not prove it
// holds the claimed address's key.
var ErrUnproven = errors.New("orchestrator did not prove its address")

// Unproven counts orchestrators left out of a plan because they named an
// address they did not prove, by reason. The tester registers it with its
// other metrics (tester.NewMetrics); addresses are never label values.
var Unproven = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tester_identity_unproven_total",
	Help: "Discovered orchestrators not probed because they did not prove the address they named (Ping signature), by reason.",
}, []string{"reason"})

// Error says why a claim is unproven; it wraps ErrUnproven.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%s): %v", ErrUnproven, e.Reason, e.Err) }
func (e *Error) Unwrap() error { return ErrUnproven }

// Prove asks the orchestrator at serviceURI to sign a fresh random value
// with Ping and checks that the signer is claimed.
func Prove(ctx context.Context, serviceURI string, claimed common.Address) error {
	challenge := make([]byte, 32)
	if _, err := rand.Read(challenge); err != nil {
		return fmt.Errorf("identity challenge: %w", err)
	}
	sig, err := gateway.Ping(ctx, serviceURI, challenge)
	if err != nil {
		return &Error{Reason: ReasonPingFailed, Err: err}
	}
	if len(sig) == 0 {
		return &Error{Reason: ReasonUnsigned, Err: errors.New("Ping answered no signature (off-chain orchestrator)")}
	}
	if err := pm.VerifyKeccak(claimed, challenge, sig); err != nil {
		return &Error{Reason: ReasonOtherSigner, Err: err}
	}
	return nil
}

// Check returns claimed when the orchestrator at serviceURI proves it, and
// the zero address when it does not, after logging why and counting it in
// Unproven: the caller then probes nothing under any address for that URL,
// the same as for an orchestrator that names no address.
func Check(ctx context.Context, serviceURI string, claimed common.Address, log *slog.Logger) common.Address {
	err := Prove(ctx, serviceURI, claimed)
	if err == nil {
		return claimed
	}
	reason := ReasonPingFailed
	var ie *Error
	if errors.As(err, &ie) {
		reason = ie.Reason
	}
	Unproven.WithLabelValues(reason).Inc()
	log.Warn("discovery: orchestrator names an address it does not prove (Ping signature); not probed, nothing stored under that address",
		"service_uri", serviceURI, "claimed_address", claimed.Hex(), "reason", reason, "err", err)
	return common.Address{}
}
