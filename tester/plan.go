// Package tester is one region's prober: it plans a round over a list of
// orchestrators (one probe per orchestrator, pipeline and model), runs it
// with bounded concurrency and staggered starts, and hands each result to a
// sink (the ClickHouse writer). The probe itself lives in tester/probe, the
// storage path in tester/writer.
package tester

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/lpgauge/lpgauge/tester/probe"
)

// Target is one orchestrator to probe.
type Target struct {
	Address    string // lower-case 0x ETH address
	ServiceURI string // http(s)://host:port
	// Models lists what to probe on this orchestrator; empty means the
	// plan's default list.
	Models []Model
}

// Model is one pipeline and model to probe.
type Model struct {
	Pipeline probe.Pipeline
	Model    string
}

func (m Model) String() string { return m.Pipeline.Info().Slug + ":" + m.Model }

// ErrBadTargets and ErrBadModels mark configuration errors in -orchestrators
// and -models.
var (
	ErrBadTargets = errors.New("bad orchestrator list")
	ErrBadModels  = errors.New("bad model list")
)

var addressRE = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)

// ParseModels parses "pipeline:model" items separated by commas or spaces,
// e.g. "text-to-image:stabilityai/sdxl-turbo,llm:meta-llama/Llama-3.1-8B-Instruct".
func ParseModels(s string) ([]Model, error) {
	var out []Model
	seen := map[string]bool{}
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		slug, model, ok := strings.Cut(item, ":")
		if !ok || slug == "" || model == "" {
			return nil, fmt.Errorf("%w: %q is not pipeline:model (e.g. text-to-image:stabilityai/sdxl-turbo)", ErrBadModels, item)
		}
		p, ok := probe.Lookup(slug)
		if !ok {
			return nil, fmt.Errorf("%w: unknown pipeline %q in %q: use one of %s", ErrBadModels, slug, item, strings.Join(probe.Slugs(), ", "))
		}
		m := Model{Pipeline: p, Model: model}
		if seen[m.String()] {
			continue
		}
		seen[m.String()] = true
		out = append(out, m)
	}
	return out, nil
}

// ParseTargets reads the orchestrator list: either the path of a file, or the
// list inline. One target is "address=serviceURI" optionally followed by
// space-separated pipeline:model items that replace the default model list
// for that orchestrator. Inline, targets are separated by commas; in a file,
// by lines ('#' starts a comment).
//
//	0x1111111111111111111111111111111111111111=https://orch1:8935 text-to-image:stabilityai/sdxl-turbo
func ParseTargets(s string) ([]Target, error) {
	var entries []string
	if st, err := os.Stat(s); err == nil && !st.IsDir() {
		f, err := os.Open(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadTargets, err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			entries = append(entries, line)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%w: read %s: %w", ErrBadTargets, s, err)
		}
	} else {
		entries = strings.Split(s, ",")
	}
	var out []Target
	seen := map[string]bool{}
	for _, e := range entries {
		fields := strings.Fields(e)
		if len(fields) == 0 {
			continue
		}
		addr, uri, ok := strings.Cut(fields[0], "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q is not address=serviceURI", ErrBadTargets, fields[0])
		}
		if !addressRE.MatchString(addr) {
			return nil, fmt.Errorf("%w: %q is not an orchestrator address (0x and 40 hex digits)", ErrBadTargets, addr)
		}
		u, err := url.Parse(uri)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: service URI %q of %s: want http(s)://host:port", ErrBadTargets, uri, addr)
		}
		addr = strings.ToLower(addr)
		if seen[addr] {
			return nil, fmt.Errorf("%w: orchestrator %s listed twice", ErrBadTargets, addr)
		}
		seen[addr] = true
		models, err := ParseModels(strings.Join(fields[1:], ","))
		if err != nil {
			return nil, fmt.Errorf("%w: orchestrator %s: %w", ErrBadTargets, addr, err)
		}
		out = append(out, Target{Address: addr, ServiceURI: strings.TrimRight(uri, "/"), Models: models})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no orchestrators given", ErrBadTargets)
	}
	return out, nil
}

// Planned is one probe of a round.
type Planned struct {
	Target Target
	Model  Model
}

// Plan lists one probe per (orchestrator, pipeline, model), orchestrators in
// the given order. A target with no model list of its own uses defaults.
func Plan(targets []Target, defaults []Model) ([]Planned, error) {
	var out []Planned
	for _, t := range targets {
		ms := t.Models
		if len(ms) == 0 {
			ms = defaults
		}
		if len(ms) == 0 {
			return nil, fmt.Errorf("%w: orchestrator %s has no models and no default model list was given (-models)", ErrBadModels, t.Address)
		}
		for _, m := range ms {
			out = append(out, Planned{Target: t, Model: m})
		}
	}
	return out, nil
}
