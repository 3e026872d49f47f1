// Package preparer plugs the Livepeer wire protocol into the tester: its
// Preparer calls GetOrchestrator (timed as the probe's discovery phase) and
// returns the Livepeer-Payment / Livepeer-Segment headers for the job. It is
// the tester's adapter over the gateway library, so the gateway library
// never imports the tester.
package preparer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// Preparer implements probe.Preparer. A Gateway with a nil Sender is the
// off-chain mode (unsigned discovery, no payment), which still fetches the
// auth token the orchestrator's credential check needs.
type Preparer struct {
	Gateway *gateway.Gateway
	// Senders, when set, replaces Gateway: one gateway per tester key, each
	// its own TicketBroker sender with its own deposit, session cache,
	// credit and nonces. Each probe is paid by one of them, drawn uniformly
	// among those that can pay (see Prepare).
	Senders []*gateway.Gateway
	// Paid, when set, is told which sender's Livepeer-Payment a prepared
	// job carries (on chain only).
	Paid func(sender common.Address)

	// perm orders the senders for one probe; nil is rand.Perm (tests fix
	// a seed).
	perm func(n int) []int
}

var _ probe.Preparer = Preparer{}

// refusal is how a gateway error is recorded: whose fault and which code.
type refusal struct {
	err   error
	class probe.Class
	code  string
}

// refusals classify the gateway's sender-side refusals. The gateway's own
// limits, funds and chain connection are tester-side (excused, never
// scored); malformed or expired terms from the orchestrator are its payment
// fault.
var refusals = []refusal{
	{gateway.ErrPriceTooHigh, probe.ClassTester, "price_above_max"},
	{gateway.ErrTicketEVTooHigh, probe.ClassTester, "ticket_ev_above_max"},
	{gateway.ErrTotalEVTooHigh, probe.ClassTester, "total_ev_above_max"},
	{gateway.ErrFaceValueTooHigh, probe.ClassTester, "face_value_above_deposit"},
	{gateway.ErrSenderFunds, probe.ClassTester, "sender_funds"},
	{gateway.ErrChain, probe.ClassTester, "chain_unavailable"},
	{gateway.ErrBadPrice, probe.ClassPayment, "price_invalid"},
	{gateway.ErrBadTicketParams, probe.ClassPayment, "ticket_params_invalid"},
	{gateway.ErrParamsExpired, probe.ClassPayment, "ticket_params_expired"},
	{pm.ErrNoTicketParams, probe.ClassPayment, "no_ticket_params"},
	{gateway.ErrTokenExpired, probe.ClassPayment, "auth_token_expired"},
}

// classify turns a gateway error into a classified probe error; ok is false
// for errors the table does not name.
func classify(err error) (*probe.Error, bool) {
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return &probe.Error{Class: r.class, Code: r.code, Message: err.Error(), Err: err}, true
		}
	}
	return nil, false
}

// Prepare implements probe.Preparer. With Senders, the probe's sender is
// drawn uniformly among the keys that can pay: the keys are tried in a
// fresh random order, a key whose TicketBroker deposit or reserve is empty
// or whose unlock is pending is skipped before anything is sent (the same
// cached read and rule as a payment's, gateway.SenderFunds), and a key the
// orchestrator's terms refuse for its funds (its face value above the key's
// deposit / -depositMultiplier) hands the probe to the next key, with a
// GetOrchestrator of its own: ticket params are issued to one sender
// (go-livepeer pm/recipient.go:193-215 binds recipientRand to the sender;
// server/rpc.go:616), the nonces count per params set (pm/sender.go:73-110)
// and the orchestrator credits (sender, session) (core/orchestrator.go:204),
// so nothing of one key's session is used by another. Uniform, not weighted by deposit: every funded address
// is then equally (and as rarely) seen by an orchestrator, which is the
// point of several keys; a key whose deposit runs out drops out by itself.
// When no key can pay, the probe is excused as with one key
// (tester/sender_funds, or tester/chain_unavailable when a read failed).
func (p Preparer) Prepare(ctx context.Context, job probe.PrepareJob) (probe.Preparation, error) {
	if len(p.Senders) == 0 {
		return p.with(ctx, p.Gateway, job)
	}
	var (
		discovery time.Duration
		refused   error // the last funds refusal
		chainErr  error // the last failed chain read
	)
	perm := p.perm
	if perm == nil {
		perm = rand.Perm
	}
	for _, i := range perm(len(p.Senders)) {
		gw := p.Senders[i]
		if err := gw.SenderFunds(ctx); err != nil {
			if errors.Is(err, gateway.ErrChain) {
				chainErr = err
			} else {
				refused = err
			}
			continue
		}
		prep, err := p.with(ctx, gw, job)
		discovery += prep.Discovery
		prep.Discovery = discovery
		if err != nil && (errors.Is(err, gateway.ErrSenderFunds) || errors.Is(err, gateway.ErrFaceValueTooHigh)) {
			refused = err
			continue
		}
		return prep, err
	}
	prep := probe.Preparation{Discovery: discovery}
	err := refused
	if chainErr != nil && !errors.Is(refused, gateway.ErrFaceValueTooHigh) {
		err = chainErr
	}
	if e, ok := classify(err); ok {
		e.Message = fmt.Sprintf("none of the %d tester keys can pay: %s", len(p.Senders), e.Message)
		return prep, e
	}
	return prep, fmt.Errorf("%w: none of the %d tester keys can pay: %v", probe.ErrTesterSide, len(p.Senders), err)
}

// with prepares the job with one sender's gateway.
func (p Preparer) with(ctx context.Context, gw *gateway.Gateway, job probe.PrepareJob) (probe.Preparation, error) {
	prep, reused, err := p.prepare(ctx, gw, job)
	// Reused info whose terms went stale between the cache's check and the
	// payment's (a block mined, the token aged): refresh once.
	if reused && (errors.Is(err, gateway.ErrParamsExpired) || errors.Is(err, gateway.ErrTokenExpired)) {
		gw.Forget(job.ServiceURI, job.Pipeline.ID, job.Model)
		prep, _, err = p.prepare(ctx, gw, job)
	}
	if err == nil && gw.Sender != nil && p.Paid != nil {
		p.Paid(gw.Sender.Address())
	}
	return prep, err
}

// prepare is one attempt; reused says the orchestrator info came from the
// session cache.
func (p Preparer) prepare(ctx context.Context, gw *gateway.Gateway, job probe.PrepareJob) (prep probe.Preparation, reused bool, err error) {
	s, err := gw.Session(ctx, job.ServiceURI, job.Pipeline.ID, job.Model)
	prep.Discovery = s.RTT
	if err != nil {
		if e, ok := classify(err); ok {
			return prep, false, e
		}
		return prep, false, fmt.Errorf("%w: %v", probe.ErrDiscovery, err)
	}
	info := s.Info
	// A registry address that does not match what the orchestrator says it
	// is means we reached someone else. A zero address is an off-chain
	// orchestrator without a key: it claims no identity to compare.
	if addr := common.BytesToAddress(info.GetAddress()); job.Orchestrator != "" && len(info.GetAddress()) == common.AddressLength &&
		addr != (common.Address{}) && !strings.EqualFold(addr.Hex(), job.Orchestrator) {
		return prep, s.Reused, fmt.Errorf("%w: orchestrator at %s reports address %s, registry says %s", probe.ErrDiscovery,
			job.ServiceURI, common.BytesToAddress(info.GetAddress()).Hex(), job.Orchestrator)
	}
	if mc, ok := gateway.Model(info, job.Pipeline.ID, job.Model); ok {
		prep.Warm = mc.GetWarm()
	}
	if job.Pipeline.ID == capability.LiveVideoToVideo {
		return p.prepareLive(ctx, job, info, prep, s.Reused)
	}
	units := int64(math.Ceil(job.Units))
	j, err := gw.Pay(ctx, info, job.Pipeline.ID, job.Model, units)
	if err != nil {
		if errors.Is(err, gateway.ErrNotOffered) {
			return prep, s.Reused, fmt.Errorf("%w: %v", probe.ErrDiscovery, err)
		}
		if e, ok := classify(err); ok {
			return prep, s.Reused, e
		}
		return prep, s.Reused, fmt.Errorf("%w: %v", probe.ErrTesterSide, err)
	}
	prep.Header = j.Header
	// The job goes where the orchestrator says it takes work, as a
	// go-livepeer gateway sends it (server/ai_process.go:204).
	prep.JobURI = j.URI
	prep.Accepted = j.Accepted
	if s.Reused {
		prep.Forget = func() { gw.Forget(job.ServiceURI, job.Pipeline.ID, job.Model) }
	}
	return prep, s.Reused, nil
}

// prepareLive is prepare's end for a live-video-to-video job: the start
// request's headers with the initial payment (60 s of 1280×720×30 on a
// fresh balance, gateway.LivePayer), the transcoder URI the start goes to
// (server/ai_process.go:1095-1106), and the payer of the periodic payments
// when there is a price to pay (server/ai_live_video.go:86-101).
func (p Preparer) prepareLive(ctx context.Context, job probe.PrepareJob, info *lpnet.OrchestratorInfo, prep probe.Preparation, reused bool) (probe.Preparation, bool, error) {
	lp := p.Gateway.LivePayer(info, job.Model)
	h, _, err := lp.StartHeaders(ctx)
	if err != nil {
		if errors.Is(err, gateway.ErrNotOffered) {
			return prep, reused, fmt.Errorf("%w: %v", probe.ErrDiscovery, err)
		}
		if e, ok := classify(err); ok {
			return prep, reused, e
		}
		return prep, reused, fmt.Errorf("%w: %v", probe.ErrTesterSide, err)
	}
	prep.Header = h
	prep.JobURI = info.GetTranscoder()
	if lp.Paying() {
		prep.Live = lp
	}
	if reused {
		prep.Forget = func() { p.Gateway.Forget(job.ServiceURI, job.Pipeline.ID, job.Model) }
	}
	return prep, reused, nil
}
