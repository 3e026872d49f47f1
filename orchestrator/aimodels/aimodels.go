// Package aimodels reads -aiModels as go-livepeer does: a JSON file, a JSON
// array, or the inline pipeline:model:warm list, validated whole.
package aimodels

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lpgauge/lpgauge/capability"
)

// Model is one aiModels.json entry, with go-livepeer's field names.
type Model struct {
	Pipeline string `json:"pipeline"`
	ModelID  string `json:"model_id"`
	Warm     bool   `json:"warm,omitempty"`
	// Capacity: for managed runners, how many identical runners to start;
	// for an external URL, how many concurrent requests it takes. 0 = unset.
	Capacity          int               `json:"capacity,omitempty"`
	OptimizationFlags OptimizationFlags `json:"optimization_flags,omitempty"`
	URL               string            `json:"url,omitempty"`
	Token             string            `json:"token,omitempty"`
	PricePerUnit      *Price            `json:"price_per_unit,omitempty"`
	PixelsPerUnit     *Price            `json:"pixels_per_unit,omitempty"`
	Currency          string            `json:"currency,omitempty"`
	Gateway           string            `json:"gateway,omitempty"`
}

// OptimizationFlags become runner env vars; JSON booleans become "true"/"false".
type OptimizationFlags map[string]EnvValue

// EnvValue is a flag value as text, whatever JSON scalar it was written as.
type EnvValue string

// UnmarshalJSON accepts strings, numbers and booleans.
func (v *EnvValue) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = EnvValue(s)
		return nil
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	switch t := x.(type) {
	case bool:
		*v = EnvValue(strconv.FormatBool(t))
	case float64:
		*v = EnvValue(strings.TrimSpace(string(b)))
	default:
		return fmt.Errorf("optimization flag must be a string, number or boolean, got %s", b)
	}
	return nil
}

// Price is a non-negative rational written as a JSON number or a string
// ("0.5", "1e-3", "3/2"), as go-livepeer reads price_per_unit.
type Price struct{ big.Rat }

// UnmarshalJSON accepts a number or a string holding one.
func (p *Price) UnmarshalJSON(b []byte) error {
	text := strings.TrimSpace(string(b))
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
	}
	if _, ok := p.SetString(strings.TrimSpace(text)); !ok {
		return fmt.Errorf("%q is not a number", text)
	}
	return nil
}

// MarshalJSON writes the price as a string to keep it exact.
func (p Price) MarshalJSON() ([]byte, error) { return json.Marshal(p.RatString()) }

// Parse reads -aiModels: a path to a JSON file, a JSON array, or the
// inline list "pipeline:model_id:warm,…". Entries are validated; errors
// name the entry index and field.
func Parse(s string) ([]Model, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("aiModels: empty")
	}
	data := []byte(s)
	if info, err := os.Stat(s); err == nil && !info.IsDir() {
		if data, err = os.ReadFile(s); err != nil {
			return nil, fmt.Errorf("aiModels: %w", err)
		}
	} else if !strings.HasPrefix(s, "[") {
		return parseInline(s)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("aiModels: not a JSON array of entries: %w", err)
	}
	models := make([]Model, len(raw))
	for i, r := range raw {
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&models[i]); err != nil {
			return nil, fmt.Errorf("aiModels[%d]: %w", i, err)
		}
	}
	if err := Validate(models); err != nil {
		return nil, err
	}
	return models, nil
}

func parseInline(s string) ([]Model, error) {
	var models []Model
	for i, entry := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(entry), ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("aiModels[%d]: %q: expected <pipeline>:<model_id>:<warm>", i, entry)
		}
		warm, err := strconv.ParseBool(parts[2])
		if err != nil {
			return nil, fmt.Errorf("aiModels[%d].warm: %q is not a boolean", i, parts[2])
		}
		models = append(models, Model{Pipeline: parts[0], ModelID: parts[1], Warm: warm})
	}
	if err := Validate(models); err != nil {
		return nil, err
	}
	return models, nil
}

// Validate checks what go-livepeer would panic on at boot, and more.
func Validate(models []Model) error {
	if len(models) == 0 {
		return errors.New("aiModels: no entries")
	}
	type key struct{ pipeline, model string }
	seen := map[key]int{}
	for i, m := range models {
		at := func(field, format string, args ...any) error {
			return fmt.Errorf("aiModels[%d].%s: %s", i, field, fmt.Sprintf(format, args...))
		}
		_, ok := capability.BySlug(m.Pipeline)
		switch {
		case m.Pipeline == "":
			return at("pipeline", "required")
		case !ok:
			return at("pipeline", "unknown pipeline %q", m.Pipeline)
		case m.ModelID == "":
			return at("model_id", "required")
		case !utf8.ValidString(m.ModelID):
			// Only the inline form can carry it; protobuf strings (GetOrchestrator) must be UTF-8.
			return at("model_id", "%q is not valid UTF-8", m.ModelID)
		case m.Capacity < 0:
			return at("capacity", "must not be negative, got %d", m.Capacity)
		case m.PricePerUnit != nil && m.PricePerUnit.Sign() < 0:
			return at("price_per_unit", "must not be negative")
		case m.PixelsPerUnit != nil && (!m.PixelsPerUnit.IsInt() || m.PixelsPerUnit.Sign() <= 0):
			return at("pixels_per_unit", "must be a positive integer, got %s", m.PixelsPerUnit.RatString())
		case m.Token != "" && m.URL == "":
			return at("token", "set without url")
		}
		if m.URL != "" {
			u, err := url.Parse(m.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return at("url", "%q is not an http(s) URL", m.URL)
			}
		}
		k := key{m.Pipeline, m.ModelID}
		if j, dup := seen[k]; dup {
			if models[j].Warm != m.Warm {
				return at("warm", "%s %s is both warm and cold (entry %d)", m.Pipeline, m.ModelID, j)
			}
			return at("model_id", "%s %s already configured by entry %d", m.Pipeline, m.ModelID, j)
		}
		seen[k] = i
	}
	return nil
}

// WeiPrice turns price_per_unit/pixels_per_unit into the integer pair the
// wire carries. Prices in a fiat currency need a price feed, which is the
// payment gate's job; they report 0 here.
func (m Model) WeiPrice() (price, pixels int64) {
	if m.PricePerUnit == nil || m.Currency != "" {
		return 0, 1
	}
	r := new(big.Rat).Set(&m.PricePerUnit.Rat)
	if m.PixelsPerUnit != nil {
		r.Quo(r, &m.PixelsPerUnit.Rat)
	}
	if !r.Num().IsInt64() || !r.Denom().IsInt64() {
		return 0, 1
	}
	return r.Num().Int64(), r.Denom().Int64()
}
