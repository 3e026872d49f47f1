// Package lprpc is the orchestrator's gRPC face: net.Orchestrator/
// GetOrchestrator advertising live capabilities, prices, ticket params and
// an auth token, and the one-port server that shares the service URI between
// gRPC and the HTTP job endpoints as go-livepeer does.
package lprpc

import (
	"context"
	"sort"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lpgauge/lpgauge/gateway/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// Server implements lpnet.OrchestratorServer.
type Server struct {
	lpnet.UnimplementedOrchestratorServer
	// URI is the service URI advertised as OrchestratorInfo.transcoder.
	URI      string
	Receiver *payment.Receiver
	// States reports the served models (orchestrator.Runners.States).
	States func() []orchestrator.ModelState
	// Version is advertised as Capabilities.version.
	Version string
	// Address is advertised as OrchestratorInfo.address when the receiver
	// has no key (off-chain); with a key the ticket recipient is advertised,
	// since that is the identity payments are bound to.
	Address common.Address
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
	return &lpnet.PriceInfo{Capability: uint32(p.ID), Constraint: model}
}

func priceOf(st orchestrator.ModelState) *lpnet.PriceInfo {
	ppu := st.PixelsPerUnit
	if ppu <= 0 {
		ppu = 1
	}
	return &lpnet.PriceInfo{PricePerUnit: st.PricePerUnit, PixelsPerUnit: ppu, Capability: uint32(st.Pipeline.ID), Constraint: st.Model}
}

// GetOrchestrator answers discovery.
func (s *Server) GetOrchestrator(ctx context.Context, req *lpnet.OrchestratorRequest) (*lpnet.OrchestratorInfo, error) {
	sender := common.BytesToAddress(req.GetAddress())
	if s.Receiver.OnChain() {
		if len(req.GetAddress()) != common.AddressLength {
			return nil, status.Error(codes.InvalidArgument, "address must be 20 bytes")
		}
		// The gateway signs its checksummed address string.
		if err := pm.VerifyKeccak(sender, []byte(sender.Hex()), req.GetSig()); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "invalid sig: %v", err)
		}
	}
	states := s.States()
	caps, prices := advertise(states, s.Version)
	if need := req.GetCapabilities().GetBitstring(); !capability.Covers(caps.GetBitstring(), need) {
		return nil, status.Errorf(codes.FailedPrecondition, "capabilities not supported: requested %v, offered %v",
			capability.IDs(need), capability.IDs(caps.GetBitstring()))
	}
	info := &lpnet.OrchestratorInfo{
		Transcoder:   s.URI,
		Address:      s.address().Bytes(),
		Capabilities: caps,
		AuthToken:    s.Receiver.AuthToken(),
	}
	price := requestedPrice(req.GetCapabilities(), prices)
	if price == nil {
		info.CapabilitiesPrices = prices
		info.PriceInfo = &lpnet.PriceInfo{PixelsPerUnit: 1}
		return info, nil
	}
	info.PriceInfo = price
	tp, err := s.Receiver.TicketParams(ctx, sender, price)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	info.TicketParams = tp
	return info, nil
}

// advertise builds Capabilities and per-model prices from live model state.
func advertise(states []orchestrator.ModelState, version string) (*lpnet.Capabilities, []*lpnet.PriceInfo) {
	var ids []capability.ID
	per := map[uint32]*lpnet.Capabilities_CapabilityConstraints{}
	capacities := map[uint32]uint32{}
	var prices []*lpnet.PriceInfo
	for _, st := range states {
		id := uint32(st.Pipeline.ID)
		if per[id] == nil {
			per[id] = &lpnet.Capabilities_CapabilityConstraints{Models: map[string]*lpnet.Capabilities_CapabilityConstraints_ModelConstraint{}}
			ids = append(ids, st.Pipeline.ID)
		}
		per[id].Models[st.Model] = &lpnet.Capabilities_CapabilityConstraints_ModelConstraint{
			Warm: st.Warm, Capacity: uint32(max(st.Capacity, 0)), RunnerVersion: st.RunnerVersion, CapacityInUse: uint32(max(st.InUse, 0)),
		}
		capacities[id] += uint32(max(st.Capacity, 0))
		prices = append(prices, priceOf(st))
	}
	sort.Slice(prices, func(i, j int) bool {
		if prices[i].Capability != prices[j].Capability {
			return prices[i].Capability < prices[j].Capability
		}
		return prices[i].Constraint < prices[j].Constraint
	})
	return &lpnet.Capabilities{
		Bitstring:   capability.Bitstring(ids...),
		Capacities:  capacities,
		Version:     version,
		Constraints: &lpnet.Capabilities_Constraints{PerCapability: per},
	}, prices
}

// requestedPrice is the price for the one (capability, model) the request
// names in its constraints, as go-livepeer's PriceInfoForCaps.
func requestedPrice(caps *lpnet.Capabilities, prices []*lpnet.PriceInfo) *lpnet.PriceInfo {
	for id, cc := range caps.GetConstraints().GetPerCapability() {
		for model := range cc.GetModels() {
			for _, p := range prices {
				if p.Capability == id && p.Constraint == model {
					return p
				}
			}
		}
	}
	return nil
}
