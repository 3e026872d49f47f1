package lprpc

import (
	"errors"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// ErrOrchestratorCapped is go-livepeer's answer to a discovery request for
// live models none of which has an idle runner (server/rpc.go:544-546,
// core/orchestrator.go:563).
var ErrOrchestratorCapped = errors.New("Invalid orchestrator request: OrchestratorCapped")

// setLiveAICapacity is go-livepeer's (server/rpc.go:632,659-677): a live
// model advertises its idle runners as capacity and its busy ones as
// capacityInUse, not the static aiModels.json number.
func setLiveAICapacity(mc *lpnet.Capabilities_CapabilityConstraints_ModelConstraint, st orchestrator.ModelState) {
	mc.Capacity = uint32(max(st.Capacity-st.InUse, 0))
	mc.CapacityInUse = uint32(max(st.InUse, 0))
}

// checkLiveCapacity is checkLiveVideoToVideoCapacity (server/rpc.go:
// 550-570): a request whose constraints name capability 35 needs an idle
// runner for at least one of its models, unless it sets
// ignoreCapacityCheck. Batch pipelines are never checked.
func (s *Server) checkLiveCapacity(req *lpnet.OrchestratorRequest) error {
	caps := req.GetCapabilities()
	if caps == nil || req.GetIgnoreCapacityCheck() || caps.GetConstraints().GetPerCapability() == nil {
		return nil
	}
	live, ok := caps.GetConstraints().GetPerCapability()[uint32(capability.LiveVideoToVideo)]
	if !ok {
		return nil
	}
	states := s.States()
	for model := range live.GetModels() {
		for _, st := range states {
			if st.Pipeline.ID == capability.LiveVideoToVideo && st.Model == model && st.InUse < st.Capacity {
				return nil
			}
		}
	}
	return ErrOrchestratorCapped
}
