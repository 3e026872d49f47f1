// Package preparer plugs the Livepeer wire protocol into the tester: its
// Preparer calls GetOrchestrator (timed as the probe's discovery phase) and
// returns the Livepeer-Payment / Livepeer-Segment headers for the job. It is
// a separate package so gateway never imports the tester.
package preparer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// Preparer implements probe.Preparer. A Gateway with a nil Sender is the
// off-chain mode (unsigned discovery, no payment), which still fetches the
// auth token the orchestrator's credential check needs.
type Preparer struct {
	Gateway *gateway.Gateway
}

var _ probe.Preparer = Preparer{}

// Prepare implements probe.Preparer.
func (p Preparer) Prepare(ctx context.Context, job probe.PrepareJob) (probe.Preparation, error) {
	info, rtt, err := p.Gateway.Discover(ctx, job.ServiceURI, job.Pipeline.ID, job.Model)
	prep := probe.Preparation{Discovery: rtt}
	if err != nil {
		return prep, fmt.Errorf("%w: %v", probe.ErrDiscovery, err)
	}
	// A registry address that does not match what the orchestrator says it
	// is means we reached someone else. A zero address is an off-chain
	// orchestrator without a key: it claims no identity to compare.
	if addr := common.BytesToAddress(info.GetAddress()); job.Orchestrator != "" && len(info.GetAddress()) == common.AddressLength &&
		addr != (common.Address{}) && !strings.EqualFold(addr.Hex(), job.Orchestrator) {
		return prep, fmt.Errorf("%w: orchestrator at %s reports address %s, registry says %s", probe.ErrDiscovery,
			job.ServiceURI, common.BytesToAddress(info.GetAddress()).Hex(), job.Orchestrator)
	}
	if mc, ok := gateway.Model(info, job.Pipeline.ID, job.Model); ok {
		prep.Warm = mc.GetWarm()
	}
	units := int64(math.Ceil(job.Units))
	h, err := p.Gateway.JobHeaders(info, job.Pipeline.ID, job.Model, units)
	switch {
	case errors.Is(err, gateway.ErrNotOffered):
		return prep, fmt.Errorf("%w: %v", probe.ErrDiscovery, err)
	case errors.Is(err, gateway.ErrPriceTooHigh):
		return prep, fmt.Errorf("%w: %v", probe.ErrTesterSide, err)
	case errors.Is(err, pm.ErrNoTicketParams), errors.Is(err, gateway.ErrTokenExpired):
		return prep, fmt.Errorf("%w: %v", probe.ErrPayment, err)
	case err != nil:
		return prep, fmt.Errorf("%w: %v", probe.ErrTesterSide, err)
	}
	prep.Header = h
	return prep, nil
}
