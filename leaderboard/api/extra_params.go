package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// The additive endpoints' own parameters. Each is validated: a value that
// cannot be used is a 400 naming the parameter and what to send.

func boolParam(q url.Values, name string) (bool, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q is invalid: use 1 or 0 (true or false)", name, v)
	}
	return b, nil
}

func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q is invalid: give a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func floatParam(q url.Values, name string, def, lo, hi float64) (float64, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		return 0, fmt.Errorf("%s=%q is invalid: give a number from %g to %g", name, v, lo, hi)
	}
	return f, nil
}

func enumParam(q url.Values, name, def string, allowed ...string) (string, error) {
	v := strings.ToLower(strings.TrimSpace(q.Get(name)))
	if v == "" {
		return def, nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s=%q is invalid: use one of %s", name, q.Get(name), strings.Join(allowed, ", "))
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// globalParams reads a score endpoint's query: the common parameters and
// global=1, which adds an entry pooled over every region and so cannot go
// with a region (conflict says what to do instead). On bad input it answers
// 400 itself and returns ok=false.
func (s *Server) globalParams(c *gin.Context, conflict string) (p params, global, ok bool) {
	q := c.Request.URL.Query()
	p, err := s.parseParams(q)
	if err == nil {
		global, err = boolParam(q, "global")
	}
	if err == nil && global && p.region != "" {
		err = errors.New(conflict)
	}
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return p, false, false
	}
	return p, global, true
}
