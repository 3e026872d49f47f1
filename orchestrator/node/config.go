package node

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// Config is the orchestrator's command line. Flags operators copy from
// go-livepeer keep its spelling (-httpAddr, -serviceAddr, -network,
// -aiModels, -ethUrl, -ticketEV); the rest are lower-case dotted kebab, and
// each renamed flag keeps its old name as a deprecated alias (aliases).
type Config struct {
	Server       orchestrator.Config
	Log          cli.Log
	HTTPAddr     string
	ServiceAddr  string
	OperatorAddr string
	ServiceURI   string
	AIModels     string
	EthAddr      string
	Network      string
	Version      string
	TicketStore  string
	TLS          bool
	Chain        chainFlags
	Latency      runner.Latency
	Capacity     int
	Runners      string
	Docker       dockerFlags
	Live         orchestrator.LiveConfig // live-video-to-video, when an aiModels entry has that pipeline
	LiveProfile  runner.LiveProfile      // in-process live runners (-runners cpu)

	tlsSet bool // -tls given: onchain does not turn it on
	// Filled by Validate.
	models []aimodels.Model
	prices map[string][2]int64
	host   string
}

// aliases are the flags renamed to the house style, old → new.
var aliases = [][2]string{
	{"operatorAddr", "operator-addr"}, {"serviceURI", "service-uri"}, {"ethAddr", "eth.addr"},
	{"livepeerVersion", "livepeer-version"}, {"ticketStore", "ticket.store"},
	{"ethKeyFile", "eth.key-file"}, {"ticketBroker", "eth.ticket-broker"}, {"roundsManager", "eth.rounds-manager"},
	{"faceValue", "ticket.face-value"}, {"ticketParamsBlocks", "ticket.params-blocks"},
	{"meanServerTime", "mean-latency"}, {"serverTimeJitter", "jitter"}, {"failureRate", "failure-rate"}, {"loadTime", "load-time"},
	{"maxBodyBytes", "max-body-bytes"}, {"maxResponseBytes", "max-response-bytes"}, {"pipelineBodyBytes", "pipeline-body-bytes"},
	{"maxBodyBytesInFlight", "max-body-bytes-in-flight"}, {"bodyReadTimeout", "body-read-timeout"}, {"bodySpoolDir", "body-spool-dir"},
	{"maxResultBytes", "max-result-bytes"}, {"maxQueue", "max-queue"}, {"queueTimeout", "queue-timeout"},
	{"runnerTimeout", "runner-timeout"}, {"resultTTL", "result-ttl"},
}

// RegisterFlags defines every flag with its default, and the deprecated
// aliases.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Server.RegisterFlags(fs)
	c.Log.RegisterFlags(fs, "json")
	fs.StringVar(&c.HTTPAddr, "httpAddr", ":8935", "listen address of the one port: AI HTTP endpoints and gRPC GetOrchestrator")
	fs.StringVar(&c.ServiceAddr, "serviceAddr", "127.0.0.1:8935", "host:port gateways reach this orchestrator at")
	fs.StringVar(&c.OperatorAddr, "operator-addr", "127.0.0.1:7935", "listen address of the operator endpoints (/status, /metrics, /healthz, and with -runners docker /status/runtime and /metrics/runtime), kept off the public port; loopback by default, as go-livepeer's CLI port; empty: not served")
	fs.StringVar(&c.ServiceURI, "service-uri", "", "service URI advertised by GetOrchestrator (default http(s)://-serviceAddr) and base URL of result media URLs (default: the scheme and host of each request)")
	fs.StringVar(&c.AIModels, "aiModels", "", "aiModels.json path, JSON array, or inline pipeline:model_id:warm,… (required)")
	fs.StringVar(&c.EthAddr, "eth.addr", "", "offchain: the orchestrator's address, its identity (default derived from -serviceAddr); onchain: must match the key's address if given")
	fs.StringVar(&c.Network, "network", "offchain", "payment network: offchain (price 0, no tickets, no signatures) or onchain (tickets checked against the TicketBroker at -ethUrl, winners redeemed)")
	fs.StringVar(&c.Version, "livepeer-version", lprpc.DefaultVersion, "version advertised as Capabilities.version, compared as semver against a gateway's -orchMinLivepeerVersion; default: the go-livepeer release whose wire behaviour this orchestrator conforms to")
	fs.StringVar(&c.TicketStore, "ticket.store", "", "onchain: directory where winning tickets stay until redeemed, so a restart or crash loses none (default ~/.lpgauge/orchestrator-<address>/tickets; \"none\": memory only, queued winners lost at shutdown)")
	fs.BoolVar(&c.TLS, "tls", false, "serve the port over TLS with a generated self-signed certificate, as go-livepeer (default true with -network onchain, false offchain, where h2c is served)")
	c.Chain.register(fs)
	fs.DurationVar(&c.Latency.Mean, "mean-latency", time.Second, "CPU runners: mean inference time per job (the runner's -mean-latency)")
	fs.DurationVar(&c.Latency.Jitter, "jitter", 200*time.Millisecond, "CPU runners: uniform ± jitter around the mean")
	fs.Float64Var(&c.Latency.FailureRate, "failure-rate", 0, "CPU runners: fraction of jobs that fail with a runner 500")
	fs.DurationVar(&c.Latency.LoadTime, "load-time", 0, "CPU runners: model load time before they take jobs")
	fs.IntVar(&c.Capacity, "capacity", 1, "CPU runners per model for entries without a capacity field")
	fs.StringVar(&c.Runners, "runners", "cpu", "where jobs run: cpu (in-process reference runners) or docker (runner containers on the Docker engine and GPUs; see -runtime.*)")
	c.Docker.register(fs)
	c.Live.RegisterFlags(fs)
	fs.DurationVar(&c.LiveProfile.Latency, "live-latency", 0, "CPU live runners: time from an input segment to its output segment (the runner's -live-latency)")
	fs.IntVar(&c.LiveProfile.OutFPS, "live-out-fps", 0, "CPU live runners: drop frames to output this rate, 0 = the input rate")
	fs.DurationVar(&c.LiveProfile.StallAfter, "live-stall-after", 0, "CPU live runners: output stalls this long into a stream")
	fs.DurationVar(&c.LiveProfile.StallFor, "live-stall-for", 0, "CPU live runners: length of the stall, 0 = none")
	fs.IntVar(&c.LiveProfile.DropEvery, "live-drop-every", 0, "CPU live runners: drop every Nth output segment, 0 = none")
	fs.BoolVar(&c.LiveProfile.Passthrough, "live-passthrough", false, "CPU live runners: output the input untransformed")
	fs.BoolVar(&c.LiveProfile.NoOutput, "live-no-output", false, "CPU live runners: publish no output")
	fs.DurationVar(&c.LiveProfile.EventInterval, "live-event-interval", 5*time.Second, "CPU live runners: status event period, at most 30s")
	for _, a := range aliases {
		cli.Alias(fs, a[0], a[1])
	}
}

// Validate lists every problem at once, without touching the network (the
// chain is dialled at start). -network onchain turns -tls on unless given.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.Log.Validate())
	switch c.Network {
	case "offchain":
	case "onchain":
		if !c.tlsSet {
			c.TLS = true
		}
		_, _, _, _, err := c.Chain.validate()
		add(err)
	default:
		add(fmt.Errorf("-network %q: want offchain or onchain", c.Network))
	}
	if c.AIModels == "" {
		add(errors.New("-aiModels is required"))
	} else if models, err := aimodels.Parse(c.AIModels); err != nil {
		add(err)
	} else if prices, err := modelPrices(models); err != nil {
		add(err)
	} else {
		c.models, c.prices = models, prices
		if c.Network == "onchain" && len(prices) == 0 {
			add(errors.New("-network onchain: no aiModels entry has a price_per_unit, so no job would be paid; give prices in wei (or run -network offchain)"))
		}
	}
	if c.Capacity < 1 {
		add(errors.New("-capacity must be at least 1"))
	}
	if err := c.Latency.Validate(); err != nil {
		add(fmt.Errorf("CPU runner profile: %w", err))
	}
	add(c.Server.Validate())
	add(c.Live.Validate())
	if err := c.LiveProfile.Validate(); err != nil {
		add(fmt.Errorf("CPU live runner profile: %w", err))
	}
	if host, _, err := net.SplitHostPort(c.ServiceAddr); err != nil {
		add(fmt.Errorf("-serviceAddr %q: want host:port: %w", c.ServiceAddr, err))
	} else {
		c.host = host
	}
	if c.EthAddr != "" && !common.IsHexAddress(c.EthAddr) {
		add(fmt.Errorf("-eth.addr %q: want a 0x address (40 hex digits)", c.EthAddr))
	}
	if c.Runners != "cpu" && c.Runners != "docker" {
		add(fmt.Errorf("-runners %q: want cpu or docker", c.Runners))
	}
	return errors.Join(errs...)
}
