package node

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
)

// keyEnv holds the orchestrator's hex key when -eth.key-file is not given. A
// key is never a flag value: flags show up in ps and shell history.
const keyEnv = "ORCHESTRATOR_ETH_KEY"

// chainFlags are the flags of -network onchain.
type chainFlags struct {
	url           string
	keyFile       string
	ticketBroker  string
	roundsManager string
	faceValue     string
	ticketEV      string
	paramsBlocks  uint64
}

func (c *chainFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "ethUrl", "", "onchain: Ethereum JSON-RPC URL (http(s) or ws(s)), e.g. an Arbitrum One endpoint")
	fs.StringVar(&c.keyFile, "eth.key-file", "", "onchain: file holding the orchestrator's hex secp256k1 key (else $"+keyEnv+"); its address is the ticket recipient and pays redemption gas")
	fs.StringVar(&c.ticketBroker, "eth.ticket-broker", "", "onchain: TicketBroker contract address (deposits, reserves, winning ticket redemption)")
	fs.StringVar(&c.roundsManager, "eth.rounds-manager", "", "onchain: RoundsManager contract address (the round and block hash tickets carry)")
	fs.StringVar(&c.faceValue, "ticket.face-value", "", "onchain: face value of issued tickets in wei (default 1e12)")
	fs.StringVar(&c.ticketEV, "ticketEV", "", "onchain: expected value of one ticket in wei, at most -ticket.face-value (default faceValue/10)")
	fs.Uint64Var(&c.paramsBlocks, "ticket.params-blocks", 40, "onchain: blocks ticket params stay valid, as go-livepeer's 40")
}

// loadKey reads the orchestrator's key from path, else $ORCHESTRATOR_ETH_KEY.
func loadKey(path string) (*ecdsa.PrivateKey, error) {
	hexKey := os.Getenv(keyEnv)
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("-eth.key-file: %w", err)
		}
		hexKey = string(b)
	}
	hexKey = strings.TrimPrefix(strings.TrimSpace(hexKey), "0x")
	if hexKey == "" {
		return nil, fmt.Errorf("onchain needs the orchestrator's key: -eth.key-file or $%s (hex)", keyEnv)
	}
	k, err := crypto.HexToECDSA(hexKey)
	if err != nil {
		return nil, fmt.Errorf("orchestrator key: not a hex secp256k1 private key (64 hex digits): %w", err)
	}
	return k, nil
}

func contractAddress(flagName, s string) (common.Address, error) {
	if s == "" {
		return common.Address{}, fmt.Errorf("-%s is required with -network onchain", flagName)
	}
	if !common.IsHexAddress(s) || common.HexToAddress(s) == (common.Address{}) {
		return common.Address{}, fmt.Errorf("-%s %q: want a non-zero 0x address (40 hex digits)", flagName, s)
	}
	return common.HexToAddress(s), nil
}

func wei(flagName, s string) (*big.Int, error) {
	if s == "" {
		return nil, nil
	}
	v, ok := new(big.Int).SetString(s, 0)
	if !ok {
		// Accept 1e12 style as well.
		f, _, err := big.ParseFloat(s, 10, 256, big.ToNearestEven)
		if err != nil || !f.IsInt() {
			return nil, fmt.Errorf("-%s %q: want an integer number of wei, e.g. 1000000000000 or 1e12", flagName, s)
		}
		v, _ = f.Int(nil)
	}
	if v.Sign() <= 0 {
		return nil, fmt.Errorf("-%s %s: want more than 0 wei", flagName, s)
	}
	return v, nil
}

// onChain is a connected chain: the receiver's config and what to close.
type onChain struct {
	pcfg  payment.Config
	key   *ecdsa.PrivateKey
	close func()
}

// validate checks the flags without touching the network.
func (c *chainFlags) validate() (key *ecdsa.PrivateKey, a contracts.Addresses, face, ev *big.Int, err error) {
	var errs []error
	if c.url == "" {
		errs = append(errs, errors.New("-ethUrl is required with -network onchain"))
	} else if u, perr := url.Parse(c.url); perr != nil || u.Host == "" || !strings.Contains("http https ws wss", u.Scheme) || u.Scheme == "" {
		errs = append(errs, fmt.Errorf("-ethUrl %q: want an http(s):// or ws(s):// JSON-RPC URL", c.url))
	}
	if key, err = loadKey(c.keyFile); err != nil {
		errs = append(errs, err)
	}
	if a.TicketBroker, err = contractAddress("eth.ticket-broker", c.ticketBroker); err != nil {
		errs = append(errs, err)
	}
	if a.RoundsManager, err = contractAddress("eth.rounds-manager", c.roundsManager); err != nil {
		errs = append(errs, err)
	}
	if face, err = wei("ticket.face-value", c.faceValue); err != nil {
		errs = append(errs, err)
	}
	if ev, err = wei("ticketEV", c.ticketEV); err != nil {
		errs = append(errs, err)
	}
	if ev != nil && ev.Cmp(orDefault(face, big.NewInt(1_000_000_000_000))) > 0 {
		errs = append(errs, fmt.Errorf("-ticketEV %s is above the face value %s: a ticket cannot be worth more than it pays", ev, orDefault(face, big.NewInt(1_000_000_000_000))))
	}
	if c.paramsBlocks == 0 {
		errs = append(errs, errors.New("-ticket.params-blocks must be at least 1"))
	}
	return key, a, face, ev, errors.Join(errs...)
}

func orDefault(v, d *big.Int) *big.Int {
	if v == nil {
		return d
	}
	return v
}

// connect dials the chain and checks the contracts answer, so a wrong URL or
// address fails at start rather than on the first paid job.
func (c *chainFlags) connect(ctx context.Context) (*onChain, error) {
	key, addrs, face, ev, err := c.validate()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	client, err := ethclient.DialContext(ctx, c.url)
	if err != nil {
		return nil, fmt.Errorf("-ethUrl %s: %w", c.url, err)
	}
	chainID, err := client.ChainID(ctx)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("-ethUrl %s: chain id: %w (is it an Ethereum JSON-RPC endpoint?)", c.url, err)
	}
	for _, ct := range []struct {
		flag string
		addr common.Address
	}{{"eth.ticket-broker", addrs.TicketBroker}, {"eth.rounds-manager", addrs.RoundsManager}} {
		code, err := client.CodeAt(ctx, ct.addr, nil)
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("-ethUrl %s: read code of -%s: %w", c.url, ct.flag, err)
		}
		if len(code) == 0 {
			client.Close()
			return nil, fmt.Errorf("-%s %s: no contract at this address on chain %s", ct.flag, ct.addr.Hex(), chainID)
		}
	}
	l, err := contracts.New(client, chainID, addrs)
	if err != nil {
		client.Close()
		return nil, err
	}
	if _, _, err := l.CurrentRound(ctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("-eth.rounds-manager %s: currentRound: %w", addrs.RoundsManager.Hex(), err)
	}
	return &onChain{
		key: key,
		pcfg: payment.Config{
			Signer: pm.NewSigner(key), Chain: payment.ContractChain{L: l, Key: key},
			FaceValue: face, TicketEV: ev, ParamsValidBlocks: c.paramsBlocks,
		},
		close: client.Close,
	}, nil
}

// modelPrices are the wei prices of aiModels.json keyed by pipeline and
// model, for runners that do not report prices themselves (docker).
func modelPrices(models []aimodels.Model) (map[string][2]int64, error) {
	out := map[string][2]int64{}
	for _, m := range models {
		if m.PricePerUnit == nil {
			continue
		}
		if m.Currency != "" && !strings.EqualFold(m.Currency, "wei") {
			return nil, fmt.Errorf("aiModels %s %s: currency %q needs a price feed, which this orchestrator lacks; give price_per_unit in wei", m.Pipeline, m.ModelID, m.Currency)
		}
		r := new(big.Rat).Set(&m.PricePerUnit.Rat)
		if m.PixelsPerUnit != nil {
			if m.PixelsPerUnit.Sign() <= 0 {
				return nil, fmt.Errorf("aiModels %s %s: pixels_per_unit must be positive", m.Pipeline, m.ModelID)
			}
			r.Quo(r, &m.PixelsPerUnit.Rat)
		}
		if !r.Num().IsInt64() || !r.Denom().IsInt64() {
			return nil, fmt.Errorf("aiModels %s %s: price %s wei per unit does not fit the wire's int64 pair", m.Pipeline, m.ModelID, r.RatString())
		}
		out[m.Pipeline+"\x00"+m.ModelID] = [2]int64{r.Num().Int64(), r.Denom().Int64()}
	}
	return out, nil
}

// pricedStates fills in aiModels prices where runners report none.
func pricedStates(states func() []orchestrator.ModelState, prices map[string][2]int64) func() []orchestrator.ModelState {
	return func() []orchestrator.ModelState {
		sts := states()
		for i, st := range sts {
			if p, ok := prices[st.Pipeline.Slug+"\x00"+st.Model]; ok && st.PricePerUnit == 0 {
				sts[i].PricePerUnit, sts[i].PixelsPerUnit = p[0], p[1]
			}
		}
		return sts
	}
}
