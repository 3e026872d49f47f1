// Package gateway is the gateway side of the Livepeer protocol as a library:
// GetOrchestrator over gRPC, payment tickets and segment credentials for AI
// jobs, and the headers a job is submitted with. Discovery lives in
// gateway/discovery, ticket arithmetic in gateway/pm.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// DefaultTimeout bounds a GetOrchestrator call whose context has no deadline;
// go-livepeer's gateway uses 3 s for its gRPC connect.
const DefaultTimeout = 3 * time.Second

// ConnectTimeout bounds each connection attempt of GetOrchestrator, as
// go-livepeer's gateway bounds its gRPC connect (server/rpc.go
// GRPCConnectTimeout, 3 s). Without it gRPC waits up to 20 s for a connect,
// so a caller whose own network drops its SYNs (a blackhole) saw a
// discovery that simply took as long as the blackhole instead of failing.
const ConnectTimeout = 3 * time.Second

// ErrNotWorking means the orchestrator answered but advertised no transcoder
// URI, which go-livepeer gateways treat as "not taking work".
var ErrNotWorking = errors.New("orchestrator advertises no transcoder URI")

// GetOrchestrator asks the orchestrator at serviceURI for its info. https
// URIs use TLS without verifying the (normally self-signed) certificate, as
// go-livepeer gateways do; http URIs use h2c.
func GetOrchestrator(ctx context.Context, serviceURI string, req *lpnet.OrchestratorRequest) (*lpnet.OrchestratorInfo, error) {
	return getOrchestrator(ctx, nil, serviceURI, req)
}

// getOrchestrator is GetOrchestrator over via (nil: gRPC's own dialer).
func getOrchestrator(ctx context.Context, via func(context.Context, string, string) (net.Conn, error), serviceURI string, req *lpnet.OrchestratorRequest) (*lpnet.OrchestratorInfo, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	conn, err := dial(serviceURI, via)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	info, err := lpnet.NewOrchestratorClient(conn).GetOrchestrator(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("GetOrchestrator %s: %w", serviceURI, err)
	}
	if info.GetTranscoder() == "" {
		return info, ErrNotWorking
	}
	return info, nil
}

// Ping sends value to the orchestrator's Ping and returns what it answers:
// go-livepeer's orchestrator personal-signs keccak256(value) with the key of
// the address it reports in OrchestratorInfo.address (server/rpc.go:380-388,
// core/orchestrator.go:63-68), and answers an empty value off-chain.
func Ping(ctx context.Context, serviceURI string, value []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	conn, err := dial(serviceURI, nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	pong, err := lpnet.NewOrchestratorClient(conn).Ping(ctx, &lpnet.PingPong{Value: value})
	if err != nil {
		return nil, fmt.Errorf("Ping %s: %w", serviceURI, err)
	}
	return pong.GetValue(), nil
}

// dial opens a gRPC client to the orchestrator at serviceURI: https without
// verifying the (normally self-signed) certificate, as go-livepeer gateways
// do; http over h2c.
// via, when set, makes its connections (the tester's own network); each
// connect is bounded by ConnectTimeout.
func dial(serviceURI string, via func(context.Context, string, string) (net.Conn, error)) (*grpc.ClientConn, error) {
	u, err := url.Parse(serviceURI)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("service URI %q: not an absolute URL", serviceURI)
	}
	var creds credentials.TransportCredentials
	switch u.Scheme {
	case "https":
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // orchestrators use self-signed certs; identity is the signed ticket params
	case "http":
		creds = insecure.NewCredentials()
	default:
		return nil, fmt.Errorf("service URI %q: scheme must be http or https", serviceURI)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: ConnectTimeout})}
	if via != nil {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return via(ctx, "tcp", addr) }))
	}
	conn, err := grpc.NewClient(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", serviceURI, err)
	}
	return conn, nil
}

// OrchestratorRequest builds the discovery request for one (capability,
// model). With a signer it carries the gateway address and its signature
// over the checksummed address string; without one (off-chain) both are
// empty, as an off-chain go-livepeer gateway sends them.
func OrchestratorRequest(signer *pm.Signer, id capability.ID, model string) (*lpnet.OrchestratorRequest, error) {
	return orchestratorRequest(signer, Capabilities(id, model))
}

// InfoRequest is the no-capability discovery request (vector 01c): signed
// as OrchestratorRequest, without capabilities.
func InfoRequest(signer *pm.Signer) (*lpnet.OrchestratorRequest, error) {
	return orchestratorRequest(signer, nil)
}

// orchestratorRequest is go-livepeer's genOrchestratorReq (server/rpc.go:446-448):
// the gateway address and its InfoSig, BcastSign(ascii(EIP-55 address))
// (cmd/livepeer/starter/starter.go:1685; conformance 01_infosig.json), and
// caps. Nil caps is the no-capability request of go-livepeer's on-chain DB
// discovery (vector 01c), which asks for the full info: every capability,
// model and price.
func orchestratorRequest(signer *pm.Signer, caps *lpnet.Capabilities) (*lpnet.OrchestratorRequest, error) {
	req := &lpnet.OrchestratorRequest{Capabilities: caps}
	if signer != nil {
		sig, err := signer.SignKeccak([]byte(signer.Address().Hex()))
		if err != nil {
			return nil, fmt.Errorf("sign orchestrator request: %w", err)
		}
		req.Address = signer.Address().Bytes()
		req.Sig = sig
	}
	return req, nil
}

// Version is the Capabilities.version our gateway sends: the go-livepeer
// release whose gateway wire it reproduces (core.LivepeerVersion of the
// conformance vectors). Orchestrators only log a gateway's version; it takes
// part in no compatibility check.
const Version = "0.9.1"

// Capabilities is what a go-livepeer AI gateway asks for when it needs one
// model (server/ai_session.go:446-460, getSessions): go-livepeer's
// DefaultCapabilities plus the pipeline's bit, capacity 1 for each
// (core.NewCapabilities), the gateway's version, an empty minVersion and one
// per-capability model constraint {warm: false, runnerVersion: ""}, so warm
// and cold orchestrators both answer. Conformance vectors 01a and 01b.
// Without a model only the bits are asked for.
func Capabilities(id capability.ID, model string) *lpnet.Capabilities {
	ids := append(append(make([]capability.ID, 0, len(capability.DefaultIDs)+1), capability.DefaultIDs...), id)
	c := &lpnet.Capabilities{
		Bitstring:   capability.Bitstring(ids...),
		Capacities:  make(map[uint32]uint32, len(ids)),
		Version:     Version,
		Constraints: &lpnet.Capabilities_Constraints{PerCapability: map[uint32]*lpnet.Capabilities_CapabilityConstraints{}},
	}
	for _, i := range ids {
		c.Capacities[uint32(i)] = 1
	}
	if model != "" {
		c.Constraints.PerCapability[uint32(id)] = &lpnet.Capabilities_CapabilityConstraints{
			Models: map[string]*lpnet.Capabilities_CapabilityConstraints_ModelConstraint{model: {}},
		}
	}
	return c
}

// Model reports the orchestrator's advertised constraint for (id, model).
func Model(info *lpnet.OrchestratorInfo, id capability.ID, model string) (*lpnet.Capabilities_CapabilityConstraints_ModelConstraint, bool) {
	caps := info.GetCapabilities()
	if !capability.Has(caps.GetBitstring(), id) {
		return nil, false
	}
	m, ok := caps.GetConstraints().GetPerCapability()[uint32(id)].GetModels()[model]
	return m, ok
}

// Offer is one (capability, model) an orchestrator advertises.
type Offer struct {
	Capability capability.ID
	Model      string
	Warm       bool
}

// Offers lists the (capability, model) pairs info advertises in its
// per-capability constraints, ordered by capability then model. A capability
// bit without a model constraint names no model, so it is not listed.
func Offers(info *lpnet.OrchestratorInfo) []Offer {
	caps := info.GetCapabilities()
	var out []Offer
	for id, cc := range caps.GetConstraints().GetPerCapability() {
		if !capability.Has(caps.GetBitstring(), capability.ID(id)) {
			continue
		}
		for model, mc := range cc.GetModels() {
			out = append(out, Offer{Capability: capability.ID(id), Model: model, Warm: mc.GetWarm()})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Capability != out[j].Capability {
			return out[i].Capability < out[j].Capability
		}
		return out[i].Model < out[j].Model
	})
	return out
}
