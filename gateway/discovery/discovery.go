// Package discovery finds orchestrators the three ways go-livepeer gateways
// do: the on-chain BondingManager pool with each one's ServiceRegistry URI, a
// static list, and a webhook answering [{"address":"<uri>"}].
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/contracts"
)

// Orchestrator is one discovered orchestrator.
type Orchestrator struct {
	Address    common.Address // zero when the source does not know it (static, webhook)
	ServiceURI string
	Stake      string // total stake in wei, decimal; empty when unknown
	Active     bool
}

// Source lists orchestrators.
type Source interface {
	Orchestrators(ctx context.Context) ([]Orchestrator, error)
}

// MaxPool bounds the pool walk so a malformed (cyclic) list cannot loop forever.
const MaxPool = 1000

// Chain walks the BondingManager pool and reads each URI from the registry.
type Chain struct{ L *contracts.Livepeer }

// Orchestrators implements Source: registered transcoders with a service URI.
func (c Chain) Orchestrators(ctx context.Context) ([]Orchestrator, error) {
	out, err := c.L.BondingManager.Call(ctx, "getFirstTranscoderInPool")
	if err != nil {
		return nil, fmt.Errorf("pool walk: %w", err)
	}
	var os []Orchestrator
	for addr := out[0].(common.Address); addr != (common.Address{}) && len(os) < MaxPool; {
		uri, err := c.L.ServiceURI(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("service URI of %s: %w", addr.Hex(), err)
		}
		stake, err := c.L.BondingManager.Call(ctx, "transcoderTotalStake", addr)
		if err != nil {
			return nil, fmt.Errorf("stake of %s: %w", addr.Hex(), err)
		}
		active, err := c.L.BondingManager.Call(ctx, "isActiveTranscoder", addr)
		if err != nil {
			return nil, fmt.Errorf("active of %s: %w", addr.Hex(), err)
		}
		if uri != "" {
			os = append(os, Orchestrator{Address: addr, ServiceURI: uri, Stake: fmt.Sprint(stake[0]), Active: active[0].(bool)})
		}
		next, err := c.L.BondingManager.Call(ctx, "getNextTranscoderInPool", addr)
		if err != nil {
			return nil, fmt.Errorf("pool walk after %s: %w", addr.Hex(), err)
		}
		addr = next[0].(common.Address)
	}
	return os, nil
}

// Static is a fixed list of service URIs.
type Static []string

// Orchestrators implements Source.
func (s Static) Orchestrators(context.Context) ([]Orchestrator, error) {
	var os []Orchestrator
	for _, u := range s {
		if err := checkURI(u); err != nil {
			return nil, err
		}
		os = append(os, Orchestrator{ServiceURI: u, Active: true})
	}
	return os, nil
}

// Webhook GETs a go-livepeer orchestrator webhook.
type Webhook struct {
	URL    string
	Client *http.Client // nil: a client with a 3 s timeout, as go-livepeer
}

// MaxWebhookBody bounds the webhook response.
const MaxWebhookBody = 1 << 20

// ErrWebhook is any failure of the webhook source.
var ErrWebhook = errors.New("orchestrator webhook")

// Orchestrators implements Source.
func (w Webhook) Orchestrators(ctx context.Context) ([]Orchestrator, error) {
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 3 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebhook, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebhook, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", ErrWebhook, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxWebhookBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrWebhook, err)
	}
	if len(body) > MaxWebhookBody {
		return nil, fmt.Errorf("%w: response over %d bytes", ErrWebhook, MaxWebhookBody)
	}
	var list []struct {
		Address string   `json:"address"`
		Score   *float64 `json:"score,omitempty"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%w: want [{\"address\":\"<uri>\"}]: %v", ErrWebhook, err)
	}
	var os []Orchestrator
	for _, e := range list {
		if err := checkURI(e.Address); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrWebhook, err)
		}
		os = append(os, Orchestrator{ServiceURI: e.Address, Active: true})
	}
	return os, nil
}

func checkURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("orchestrator URI %q is not an http(s) URL", s)
	}
	return nil
}
