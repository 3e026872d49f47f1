package node

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
)

// paymentFlags are the gateway's sender-side limits, with go-livepeer's
// flag names and defaults, and OrchestratorInfo reuse. A probe an
// orchestrator's terms would break a limit of is excused (tester-side),
// never scored.
type paymentFlags struct {
	maxTicketEV, maxTotalEV, maxPrice string
	depositMultiplier                 int
	ticketBroker                      string
	reuseSessions                     bool

	limits struct{ ticketEV, totalEV, price *big.Rat }
	broker common.Address
}

func (f *paymentFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.maxTicketEV, "maxTicketEV", gateway.DefaultMaxTicketEV.FloatString(0), "-network onchain: largest expected value of one ticket (wei) the tester pays; an orchestrator asking more is excused as tester/ticket_ev_above_max")
	fs.StringVar(&f.maxTotalEV, "maxTotalEV", gateway.DefaultMaxTotalEV.FloatString(0), "-network onchain: largest expected value of all the tickets of one job (wei); above it the probe is excused as tester/total_ev_above_max")
	fs.IntVar(&f.depositMultiplier, "depositMultiplier", gateway.DefaultDepositMultiplier, "-network onchain with -eth.ticket-broker: a ticket's face value may be at most the tester's TicketBroker deposit divided by this; above it the probe is excused as tester/face_value_above_deposit")
	fs.StringVar(&f.maxPrice, "maxPricePerUnit", "0", "largest price (wei per unit: pixel, token, ms of audio…) the tester pays, e.g. 1200 or 0.5; 0 means no ceiling; an orchestrator above it is excused as tester/price_above_max")
	fs.StringVar(&f.ticketBroker, "eth.ticket-broker", "", "-network onchain: TicketBroker address; with -eth.url the tester reads its deposit and reserve there (cached 30 s) and refuses to pay without them (tester/sender_funds)")
	fs.BoolVar(&f.reuseSessions, "reuse-sessions", true, "reuse an orchestrator's GetOrchestrator answer (auth token, ticket params) across probes until the token is in its last 10% (3 min of go-livepeer's 30) or the params are within a block of expiry, as go-livepeer gateways do by default (a refusal of reused credentials is retried once with fresh ones); -reuse-sessions=false times a GetOrchestrator in every probe")
}

// validate parses the limits; ethURL is -eth.url.
func (f *paymentFlags) validate(ethURL string) []error {
	var errs []error
	for _, l := range []struct {
		flag, v string
		dst     **big.Rat
	}{{"maxTicketEV", f.maxTicketEV, &f.limits.ticketEV}, {"maxTotalEV", f.maxTotalEV, &f.limits.totalEV}, {"maxPricePerUnit", f.maxPrice, &f.limits.price}} {
		r, ok := new(big.Rat).SetString(l.v)
		if !ok || r.Sign() < 0 {
			errs = append(errs, fmt.Errorf("-%s %q: want a non-negative number of wei, e.g. 3000000000000 or 3e12", l.flag, l.v))
			continue
		}
		*l.dst = r
	}
	if f.depositMultiplier < 1 {
		errs = append(errs, fmt.Errorf("-depositMultiplier %d: want at least 1", f.depositMultiplier))
	}
	if f.ticketBroker != "" {
		switch {
		case !common.IsHexAddress(f.ticketBroker) || common.HexToAddress(f.ticketBroker) == (common.Address{}):
			errs = append(errs, fmt.Errorf("-eth.ticket-broker %q: want a non-zero 0x address (40 hex digits)", f.ticketBroker))
		case ethURL == "":
			errs = append(errs, errors.New("-eth.ticket-broker needs -eth.url, the JSON-RPC URL to read it at"))
		default:
			f.broker = common.HexToAddress(f.ticketBroker)
		}
	}
	return errs
}

// gateways builds the tester's gateways: off chain one, unsigned; on chain
// one per sender key, each signing with its key and, given -eth.url,
// reading the block clock (ticket params expiry) and, given
// -eth.ticket-broker, its own deposit there. Every gateway keeps its own
// sessions, credit, nonces and deposit cache, since ticket params are
// issued to one sender. release closes the one RPC client they share.
func (f *paymentFlags) gateways(ctx context.Context, network, ethURL string, keys []*ecdsa.PrivateKey, log *slog.Logger) (gws []*gateway.Gateway, release func(), err error) {
	release = func() {}
	if network != "onchain" {
		return []*gateway.Gateway{{MaxPricePerUnit: f.limits.price, ReuseSessions: f.reuseSessions}}, release, nil
	}
	var chain gateway.Chain
	depositMultiplier := f.depositMultiplier
	if ethURL == "" {
		log.Warn("-network onchain without -eth.url: ticket params expiry and the deposit are not checked before paying")
	} else {
		client, err := ethclient.DialContext(ctx, ethURL)
		if err != nil {
			return nil, nil, fmt.Errorf("-eth.url %s: %w", ethURL, err)
		}
		eth := gateway.EthChain{Client: client}
		if f.broker != (common.Address{}) {
			// Read-only: no chain id is needed to call getSenderInfo.
			if eth.Broker, err = contracts.New(client, nil, contracts.Addresses{TicketBroker: f.broker}); err != nil {
				client.Close()
				return nil, nil, err
			}
		} else {
			log.Warn("-network onchain without -eth.ticket-broker: the deposit, reserve and face value are not checked before paying")
			depositMultiplier = 0
		}
		chain, release = eth, client.Close
	}
	for _, key := range keys {
		gw := &gateway.Gateway{MaxPricePerUnit: f.limits.price, ReuseSessions: f.reuseSessions, Sender: pm.NewSender(pm.NewSigner(key)),
			MaxTicketEV: f.limits.ticketEV, MaxTotalEV: f.limits.totalEV, DepositMultiplier: depositMultiplier, Chain: chain}
		gws = append(gws, gw)
	}
	return gws, release, nil
}
