package node

import (
	"context"
	"math/rand/v2"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/gateway"
)

// senderCounter registers tester_probes_by_sender_total{region,sender} and
// returns the hook the preparer calls with the sender of every payment it
// makes. The label is one of the tester's own keys (as many values as
// -tester-keys holds), never an orchestrator's address.
func senderCounter(reg prometheus.Registerer, region string) func(common.Address) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tester_probes_by_sender_total",
		Help: "Probes whose Livepeer-Payment was signed by this tester key (the sender address, lower case).",
	}, []string{"sender"})
	prometheus.WrapRegistererWith(prometheus.Labels{"region": region}, reg).MustRegister(c)
	return func(a common.Address) { c.WithLabelValues(strings.ToLower(a.Hex())).Inc() }
}

// anyFunded picks the gateway that signs a discovery GetOrchestrator (the
// full-info request without capabilities): one drawn at random among the
// senders that can pay, as a go-livepeer orchestrator issues ticket params
// to, and prices for, the address that asks (server/rpc.go:600-616); the
// first when none can (the probes are then excused anyway).
func anyFunded(ctx context.Context, gws []*gateway.Gateway) *gateway.Gateway {
	if len(gws) == 1 {
		return gws[0]
	}
	for _, i := range rand.Perm(len(gws)) {
		if gws[i].SenderFunds(ctx) == nil {
			return gws[i]
		}
	}
	return gws[0]
}
