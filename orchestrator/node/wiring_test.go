package node

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/gateway"
)

// The house flags: -log.level and -log.format are accepted, a malformed
// value is refused naming the flag and the values it takes, and the
// operator listener answers /healthz and /metrics.
func TestLogFlagsAndOperatorEndpoints(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"-log.level=loud", `invalid value "loud" for flag -log.level: want debug, info, warn or error`},
		{"-log.format=xml", `invalid value "xml" for flag -log.format: want text or json`},
	} {
		err := Run(context.Background(), []string{"-aiModels", "text-to-image:" + model + ":true", "-httpAddr", "127.0.0.1:0", "-operatorAddr", "", tc.arg})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.arg, err, tc.want)
		}
	}
	addr, op := freeAddr(t), freeAddr(t)
	start(t, &gateway.Gateway{}, "http://"+addr, "-aiModels", "text-to-image:"+model+":true", "-httpAddr", addr, "-serviceAddr", addr,
		"-operatorAddr", op, "-meanServerTime", "10ms", "-log.level", "debug", "-log.format", "text")
	for _, path := range []string{"/healthz", "/metrics"} {
		if code := httpGet(t, "http://"+op+path); code != http.StatusOK {
			t.Errorf("operator %s: %d, want 200", path, code)
		}
	}
}
