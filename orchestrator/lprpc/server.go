// Package lprpc is the orchestrator's gRPC face: net.Orchestrator/
// GetOrchestrator advertising what a go-livepeer AI orchestrator advertises
// for the same aiModels.json (capabilities, prices, ticket params, an auth
// token), Ping and EndTranscodingSession, and the one-port server that shares
// the service URI between gRPC and the HTTP job endpoints as go-livepeer does.
package lprpc

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"strconv"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// DefaultVersion is the Capabilities.version advertised when none is
// configured: the go-livepeer release whose wire behaviour we conform to
// (conformance/testdata/go-livepeer, commit 176aa415c = v0.9.1-5). A
// gateway's -orchMinLivepeerVersion compares against it as semver.
const DefaultVersion = "0.9.1"

// Server implements lpnet.OrchestratorServer.
type Server struct {
	lpnet.UnimplementedOrchestratorServer
	// URI is the service URI advertised as OrchestratorInfo.transcoder.
	URI      string
	Receiver *payment.Receiver
	// States reports the served models (orchestrator.Runners.States).
	States func() []orchestrator.ModelState
	// Models are the aiModels.json entries. When set, each model's warm flag
	// and constraint capacity are advertised from them as go-livepeer does
	// (starter.go:1450-1460): warm as configured, capacity the entry's
	// capacity only when it has a url, else 1. Without them the runners'
	// warm flag and 1 are used.
	Models []aimodels.Model
	// Version is advertised as Capabilities.version; DefaultVersion if empty.
	Version string
	// Address is advertised as OrchestratorInfo.address when the receiver
	// has no key (off-chain); with a key the ticket recipient is advertised,
	// since that is the identity payments are bound to.
	Address common.Address
	// Hardware, when set, reports the GPUs behind each model; it is sent
	// with answers to requests without capabilities, as go-livepeer does.
	Hardware func() []*lpnet.HardwareInformation
}

func (s *Server) address() common.Address {
	if a := s.Receiver.Address(); a != (common.Address{}) {
		return a
	}
	return s.Address
}

// Price returns the advertised price of (pipeline, model); a payment.PriceFunc.
func (s *Server) Price(p capability.Pipeline, model string) *lpnet.PriceInfo {
	for _, st := range s.States() {
		if st.Pipeline.ID == p.ID && st.Model == model {
			return priceOf(st)
		}
	}
	return &lpnet.PriceInfo{PixelsPerUnit: 1, Capability: uint32(p.ID), Constraint: model}
}

// Gate is the payment gate for this server's jobs: the receiver's checks
// plus go-livepeer's capability check of every job's SegData against the
// capabilities advertised here.
func (s *Server) Gate() orchestrator.Gate {
	return s.Receiver.Gate(s.Price, payment.WithCapabilities(s.Capabilities), payment.WithPaymentInfo(s.info))
}

func priceOf(st orchestrator.ModelState) *lpnet.PriceInfo {
	ppu := st.PixelsPerUnit
	if ppu <= 0 {
		ppu = 1
	}
	return &lpnet.PriceInfo{PricePerUnit: st.PricePerUnit, PixelsPerUnit: ppu, Capability: uint32(st.Pipeline.ID), Constraint: st.Model}
}

// GetOrchestrator answers discovery as go-livepeer's getOrchestrator
// (server/rpc.go:527-548, 595-657): the request's signature is checked on
// chain; capabilities never cause a refusal (a gateway decides with
// CompatibleWith); a request without capabilities gets the base price, the
// per-model prices and the hardware.
func (s *Server) GetOrchestrator(ctx context.Context, req *lpnet.OrchestratorRequest) (*lpnet.OrchestratorInfo, error) {
	sender := common.BytesToAddress(req.GetAddress())
	if s.Receiver.OnChain() {
		if len(req.GetAddress()) != common.AddressLength {
			return nil, status.Error(codes.InvalidArgument, "Invalid orchestrator request: address must be 20 bytes")
		}
		// verifyOrchestratorReq: VerifySig(addr, addr.Hex(), sig).
		if err := pm.VerifyKeccak(sender, []byte(sender.Hex()), req.GetSig()); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "Invalid orchestrator request: orchestrator req sig check failed: %v", err)
		}
	}
	if err := s.checkLiveCapacity(req); err != nil {
		return nil, err
	}
	info, err := s.info(ctx, sender, req.GetCapabilities())
	if err != nil {
		return nil, err
	}
	info.AuthToken = s.Receiver.AuthToken()
	return info, nil
}

// info is the OrchestratorInfo for sender and the requested capabilities
// (go-livepeer's orchestratorInfoWithCaps, server/rpc.go:595-657), without
// an auth token.
func (s *Server) info(ctx context.Context, sender common.Address, caps *lpnet.Capabilities) (*lpnet.OrchestratorInfo, error) {
	states := s.States()
	info := &lpnet.OrchestratorInfo{
		Transcoder:   s.URI,
		Address:      s.address().Bytes(),
		Capabilities: s.capabilities(states),
	}
	if caps == nil {
		info.CapabilitiesPrices = prices(states)
		info.PriceInfo = &lpnet.PriceInfo{PricePerUnit: 0, PixelsPerUnit: 1}
		if s.Hardware != nil {
			info.Hardware = s.Hardware()
		}
	} else {
		price, err := priceForCaps(caps, states)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "price for the requested capabilities: %v", err)
		}
		info.PriceInfo = price
	}
	if !s.Receiver.OnChain() {
		// Off-chain go-livepeer sends neither price nor ticket params
		// (core/orchestrator.go:237-240, 346-349); capabilities_prices it
		// still sends.
		info.PriceInfo = nil
	} else {
		tp, err := s.Receiver.TicketParams(ctx, sender, info.PriceInfo)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		info.TicketParams = tp
	}
	return info, nil
}

// Capabilities is what this orchestrator advertises now.
func (s *Server) Capabilities() *lpnet.Capabilities { return s.capabilities(s.States()) }

// capabilities is go-livepeer's AI orchestrator advertisement
// (starter.go:1444-1503, 1829-1846; core/capabilities.go:513-540, 585-599):
// DefaultCapabilities plus each served pipeline's bit, capacity 1 for every
// bit, and per capability one model constraint {warm, capacity,
// runnerVersion}. The constraint capacity is go-livepeer's static number,
// lowered to the live one while runners are missing (our addition: a
// gateway sees at once that a model cannot take work).
func (s *Server) capabilities(states []orchestrator.ModelState) *lpnet.Capabilities {
	ids := append([]capability.ID{}, capability.DefaultIDs...)
	per := map[uint32]*lpnet.Capabilities_CapabilityConstraints{}
	for _, st := range states {
		id := uint32(st.Pipeline.ID)
		if per[id] == nil {
			per[id] = &lpnet.Capabilities_CapabilityConstraints{Models: map[string]*lpnet.Capabilities_CapabilityConstraints_ModelConstraint{}}
			ids = append(ids, st.Pipeline.ID)
		}
		warm, capa := st.Warm, 1
		for _, m := range s.Models {
			if m.Pipeline == st.Pipeline.Slug && m.ModelID == st.Model {
				warm = m.Warm
				if m.URL != "" && m.Capacity > 0 {
					capa = m.Capacity
				}
			}
		}
		capa = min(capa, max(st.Capacity, 0))
		mc := &lpnet.Capabilities_CapabilityConstraints_ModelConstraint{
			Warm: warm, Capacity: uint32(capa), RunnerVersion: st.RunnerVersion,
		}
		if st.Pipeline.ID == capability.LiveVideoToVideo {
			setLiveAICapacity(mc, st)
		}
		per[id].Models[st.Model] = mc
	}
	bits := capability.Bitstring(ids...)
	capacities := map[uint32]uint32{}
	for _, id := range capability.IDs(bits) {
		capacities[uint32(id)] = 1
	}
	version := s.Version
	if version == "" {
		version = DefaultVersion
	}
	return &lpnet.Capabilities{
		Bitstring:   bits,
		Capacities:  capacities,
		Version:     version,
		Constraints: &lpnet.Capabilities_Constraints{PerCapability: per},
	}
}

// prices is capabilities_prices: one PriceInfo per served (capability,
// model) (GetCapabilitiesPrices, core/orchestrator.go:266-345), sorted
// where go-livepeer sends map order.
func prices(states []orchestrator.ModelState) []*lpnet.PriceInfo {
	out := make([]*lpnet.PriceInfo, 0, len(states))
	for _, st := range states {
		out = append(out, priceOf(st))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Capability != out[j].Capability {
			return out[i].Capability < out[j].Capability
		}
		return out[i].Constraint < out[j].Constraint
	})
	return out
}

// priceForCaps is go-livepeer's PriceInfoForCaps (core/orchestrator.go:
// 366-438 with -autoAdjustPrice=false): the sum of the prices of every
// (capability, model) in the request's constraints whose capability is also
// a key of its capacities map; 0 when none is served. With no transcoding
// base price there is nothing to fall back to.
func priceForCaps(caps *lpnet.Capabilities, states []orchestrator.ModelState) (*lpnet.PriceInfo, error) {
	sum := new(big.Rat)
	per := caps.GetConstraints().GetPerCapability()
	for id := range caps.GetCapacities() {
		cc, ok := per[id]
		if !ok {
			continue
		}
		for model := range cc.GetModels() {
			for _, st := range states {
				if uint32(st.Pipeline.ID) == id && st.Model == model {
					p := priceOf(st)
					sum.Add(sum, big.NewRat(p.PricePerUnit, p.PixelsPerUnit))
				}
			}
		}
	}
	if !sum.Num().IsInt64() || !sum.Denom().IsInt64() {
		return nil, fmt.Errorf("summed price %s does not fit the wire's int64 pair", sum.RatString())
	}
	return &lpnet.PriceInfo{PricePerUnit: sum.Num().Int64(), PixelsPerUnit: sum.Denom().Int64()}, nil
}

// Ping signs the value with the orchestrator's key, go-livepeer's
// orch.Sign = personal-sign of keccak256(value) (server/rpc.go:380-388).
// Off-chain, like go-livepeer without an Ethereum client, the signature is
// empty.
func (s *Server) Ping(_ context.Context, req *lpnet.PingPong) (*lpnet.PingPong, error) {
	signer := s.Receiver.Signer()
	if signer == nil {
		return &lpnet.PingPong{Value: []byte{}}, nil
	}
	sig, err := signer.SignKeccak(req.GetValue())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "Unable to sign Ping request: %v", err)
	}
	return &lpnet.PingPong{Value: sig}, nil
}

// EndTranscodingSession checks the auth token is ours (server/rpc.go:
// 572-579). This orchestrator keeps no transcoding session, so there is
// nothing else to end.
func (s *Server) EndTranscodingSession(_ context.Context, req *lpnet.EndTranscodingSessionRequest) (*lpnet.EndTranscodingSessionResponse, error) {
	if err := s.Receiver.CheckToken(req.GetAuthToken()); err != nil {
		return nil, status.Error(codes.PermissionDenied, "Invalid auth token")
	}
	return &lpnet.EndTranscodingSessionResponse{}, nil
}

// HardwareFromGPUs is the hardware of every served model on the given
// GPUs, in go-livepeer's form (gpu_info keyed by GPU index).
func HardwareFromGPUs(states []orchestrator.ModelState, gpus []gpu.GPU) []*lpnet.HardwareInformation {
	if len(gpus) == 0 {
		return nil
	}
	info := map[string]*lpnet.GPUComputeInfo{}
	for _, g := range gpus {
		ci := &lpnet.GPUComputeInfo{Id: g.UUID, Name: g.Name, MemoryTotal: int64(g.MemoryTotal), MemoryFree: int64(g.MemoryFree)}
		if g.ComputeMajor > 0 {
			ci.Major, ci.Minor = uint32(g.ComputeMajor), uint32(max(g.ComputeMinor, 0))
		}
		info[strconv.Itoa(g.Index)] = ci
	}
	out := make([]*lpnet.HardwareInformation, 0, len(states))
	for _, st := range states {
		out = append(out, &lpnet.HardwareInformation{Pipeline: st.Pipeline.Slug, ModelId: st.Model, GpuInfo: info})
	}
	return out
}
