package capability

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// CompatibleWith is go-livepeer's verdict on whether an orchestrator that
// advertises orch can serve a gateway asking for gw: the rule of
// (*core.Capabilities).CompatibleWith (go-livepeer 176aa415c,
// core/capabilities.go:481-511) in its order:
//
//  1. the orchestrator's version satisfies the gateway's minVersion
//     (isVersionCompatible, core/capabilities.go:453-479);
//  2. the orchestrator's mandatory bits are all set in the gateway's
//     bitstring;
//  3. per-capability model constraints (core/capabilities.go:276-335): a
//     gateway capability the orchestrator has no constraints for is skipped;
//     otherwise every gateway model must be offered, warm when the gateway
//     asks warm, at a runner version satisfying the gateway's;
//  4. the gateway's bitstring is a subset of the orchestrator's.
//
// A go-livepeer gateway filters discovery with it, and a go-livepeer
// orchestrator checks every job's SegData capabilities against its own with
// it (server/segment_rpc.go:425-428). Like go-livepeer, a nil gw is never
// compatible.
func CompatibleWith(gw, orch *lpnet.Capabilities) bool {
	if gw == nil {
		return false
	}
	// LivepeerVersionCompatibleWith returns true when orch is nil.
	if orch != nil && !VersionCompatible(gw.GetConstraints().GetMinVersion(), orch.GetVersion()) {
		return false
	}
	if !bitsSubset(orch.GetMandatories(), gw.GetBitstring()) {
		return false
	}
	orchPer := orch.GetConstraints().GetPerCapability()
	for id, gc := range gw.GetConstraints().GetPerCapability() {
		oc, ok := orchPer[id]
		if !ok {
			continue // no constraints on this capability: assumed compatible
		}
		om := oc.GetModels()
		for model, g := range gc.GetModels() {
			o, ok := om[model]
			if !ok {
				return false
			}
			if g.GetWarm() && !o.GetWarm() {
				return false
			}
			if !VersionCompatible(g.GetRunnerVersion(), o.GetRunnerVersion()) {
				return false
			}
		}
	}
	return bitsSubset(gw.GetBitstring(), orch.GetBitstring())
}

// bitsSubset is go-livepeer's CapabilityString.CompatibleWith: every bit of
// c1 is set in c2, and c1 is no longer than c2 (a longer c1 fails even when
// its extra words are zero; core/capabilities.go:263-274).
func bitsSubset(c1, c2 []uint64) bool {
	if len(c1) > len(c2) {
		return false
	}
	for i := range c1 {
		if c1[i]&c2[i] != c1[i] {
			return false
		}
	}
	return true
}

// VersionCompatible is go-livepeer's isVersionCompatible
// (core/capabilities.go:453-479): an empty minimum accepts anything; with a
// minimum, an empty or "undefined" version fails, an unparsable minimum
// accepts, an unparsable version fails; prerelease suffixes are dropped from
// both before version ≥ minimum is checked.
func VersionCompatible(minVersion, version string) bool {
	if minVersion == "" {
		return true
	}
	if version == "" || version == "undefined" {
		return false
	}
	minV, ok := parseSemver(minVersion)
	if !ok {
		return true
	}
	v, ok := parseSemver(version)
	if !ok {
		return false
	}
	for i := range v {
		if v[i] != minV[i] {
			return v[i] > minV[i]
		}
	}
	return true
}

// semverRe is the loose grammar of Masterminds/semver v3.2.1 NewVersion,
// the parser go-livepeer uses: optional "v", 1-3 numeric parts, optional
// prerelease and build metadata.
var semverRe = regexp.MustCompile(`^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?` +
	`(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?` +
	`(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$`)

// parseSemver returns major, minor, patch as Masterminds' NewVersion would
// accept them; the prerelease only has to be valid (numeric identifiers
// without leading zeros), since go-livepeer strips it before comparing.
func parseSemver(s string) ([3]uint64, bool) {
	var out [3]uint64
	m := semverRe.FindStringSubmatch(s)
	if m == nil {
		return out, false
	}
	for i, part := range []string{m[1], m[2], m[3]} {
		part = strings.TrimPrefix(part, ".")
		if part == "" {
			continue
		}
		n, err := strconv.ParseUint(part, 10, 64)
		if err != nil {
			return out, false
		}
		out[i] = n
	}
	if pre := m[5]; pre != "" {
		for _, id := range strings.Split(pre, ".") {
			if strings.Trim(id, "0123456789") == "" && len(id) > 1 && id[0] == '0' {
				return out, false
			}
		}
	}
	return out, true
}
