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
	// The old spellings (-operatorAddr, -meanServerTime) still work: they
	// are deprecated aliases of -operator-addr and -mean-latency.
	addr, op := freeAddr(t), freeAddr(t)
	start(t, &gateway.Gateway{}, "http://"+addr, "-aiModels", "text-to-image:"+model+":true", "-httpAddr", addr, "-serviceAddr", addr,
		"-operatorAddr", op, "-meanServerTime", "10ms", "-log.level", "debug", "-log.format", "text")
	for _, path := range []string{"/healthz", "/metrics"} {
		if code := httpGet(t, "http://"+op+path); code != http.StatusOK {
			t.Errorf("operator %s: %d, want 200", path, code)
		}
	}
}

// Validate lists every problem at once, each naming its flag, so an
// operator fixes the command line in one go.
func TestConfigListsEveryProblem(t *testing.T) {
	err := Run(context.Background(), []string{"-network", "mainnet", "-capacity", "0", "-eth.addr", "me", "-runners", "gpu",
		"-max-body-bytes", "1000", "-max-body-bytes-in-flight", "999", "-serviceAddr", "nohost"})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`-network "mainnet"`, "-aiModels is required", "-capacity must be at least 1", `-eth.addr "me"`,
		`-runners "gpu"`, "-max-body-bytes-in-flight 999 is below -max-body-bytes 1000", `-serviceAddr "nohost"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
