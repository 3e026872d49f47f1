package api

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

// params are the shared query parameters of leaderboard-serverless's
// common/params.go, parsed the same way, with bad values refused instead of
// ignored.
type params struct {
	orchestrator string
	region       string
	pipeline     string
	model        string
	since, until time.Time
	jobType      regions.JobType // explicit or inferred
}

func (p params) filter() store.Filter {
	return store.Filter{
		Window:       store.Window{Since: p.since, Until: p.until},
		Pipeline:     p.pipeline,
		Model:        p.model,
		Region:       p.region,
		Orchestrator: p.orchestrator,
	}
}

// maxUnix is the last second a ClickHouse DateTime holds.
const maxUnix = 1<<32 - 1

// maxTextParam bounds the parameters that reach SQL as bound values: no
// address, region, pipeline or model name is near it, and a longer value
// would make the query text pass ClickHouse's max_query_size (a 503).
const maxTextParam = 1024

func (s *Server) parseParams(q url.Values) (params, error) {
	for _, name := range []string{"orchestrator", "region", "pipeline", "model"} {
		if n := len(q.Get(name)); n > maxTextParam {
			return params{}, fmt.Errorf("%s is %d bytes long: at most %d", name, n, maxTextParam)
		}
	}
	now := s.cfg.Now().UTC()
	p := params{
		orchestrator: strings.ToLower(strings.TrimSpace(q.Get("orchestrator"))),
		region:       strings.ToUpper(strings.TrimSpace(q.Get("region"))),
		model:        q.Get("model"),
		since:        now.Add(-s.cfg.Window),
		until:        now,
	}
	// Accept the slug ("text-to-image") as well as the human name the
	// testers store ("Text to image"); unknown names pass through verbatim
	// so a third-party tester's pipeline stays reachable.
	p.pipeline = q.Get("pipeline")
	if pl, ok := capability.Lookup(strings.TrimSpace(p.pipeline)); ok {
		p.pipeline = pl.Name
	}
	if p.region != "" {
		if _, ok := regions.Lookup(p.region); !ok {
			return p, fmt.Errorf("unknown region %q: use one of %s, or leave region out for all regions", p.region, strings.Join(allCodes(), ", "))
		}
	}
	var err error
	if v := q.Get("since"); v != "" {
		if p.since, err = parseUnix("since", v); err != nil {
			return p, err
		}
	}
	if v := q.Get("until"); v != "" {
		if p.until, err = parseUnix("until", v); err != nil {
			return p, err
		}
	}
	if p.since.After(p.until) {
		return p, fmt.Errorf("since (%s) is after until (%s): since must be the earlier unix time", p.since.Format(time.RFC3339), p.until.Format(time.RFC3339))
	}
	// Every answer's work grows with the window: a bounded window bounds
	// what any one request can make the store read and this process hold.
	if w := p.until.Sub(p.since); w > s.cfg.MaxWindow {
		return p, fmt.Errorf("since..until spans %s: at most %s per request; ask for a shorter window (several requests for a longer history)",
			w.Round(time.Second), s.cfg.MaxWindow)
	}
	switch jt := strings.ToLower(strings.TrimSpace(q.Get("job_type"))); jt {
	case "":
		// leaderboard-serverless's inference: pipeline or model ⇒ AI,
		// neither ⇒ transcoding (its backwards compatibility).
		if p.pipeline != "" || p.model != "" {
			p.jobType = regions.AI
		} else {
			p.jobType = regions.Transcoding
		}
	case string(regions.AI), string(regions.Transcoding):
		p.jobType = regions.JobType(jt)
	default:
		return p, fmt.Errorf("unknown job_type %q: use ai or transcoding, or leave it out", jt)
	}
	if p.model != "" && p.pipeline == "" {
		return p, errMissing("pipeline")
	}
	if p.pipeline != "" && p.model == "" {
		return p, errMissing("model")
	}
	return p, nil
}

// errMissing keeps leaderboard-serverless's exact messages ("model
// required"), which clients may match on.
func errMissing(what string) error { return fmt.Errorf("%s required", what) }

func parseUnix(name, v string) (time.Time, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("%s=%q is not a unix time: give seconds since 1970, fractions allowed (e.g. %s=1700000000.5)", name, v, name)
	}
	if f < 0 || f > maxUnix {
		return time.Time{}, fmt.Errorf("%s=%q is out of range: give unix seconds between 0 and %d", name, v, maxUnix)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

func allCodes() []string {
	var out []string
	for _, r := range regions.All() {
		out = append(out, r.Code)
	}
	return out
}
