package faults

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// bin holds the binaries under test, built by TestMain from this tree: the
// suite runs the programs operators run, not their run functions.
var bin struct {
	tester       string // cmd/tester as shipped
	testerFaulty string // cmd/tester built with -tags faultinject: safeguards can be switched off by env
	orchestrator string
	runner       string // static (CGO_ENABLED=0), for an image FROM scratch
}

func TestMain(m *testing.M) {
	// chtest.Main ends with os.Exit, so nothing could remove a fresh temp
	// dir: the binaries go to one fixed dir per checkout, overwritten by each
	// run, so runs never accumulate files.
	wd, _ := os.Getwd()
	sum := sha256.Sum256([]byte(wd))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("lpgauge-faults-%d-%s", os.Getuid(), hex.EncodeToString(sum[:6])))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.tester = filepath.Join(dir, "tester")
	bin.testerFaulty = filepath.Join(dir, "tester-faultinject")
	bin.orchestrator = filepath.Join(dir, "orchestrator")
	bin.runner = filepath.Join(dir, "runner")
	for _, b := range []struct {
		out, pkg, tags string
		env            []string
	}{
		{bin.tester, "../cmd/tester", "", nil},
		{bin.testerFaulty, "../cmd/tester", "faultinject", nil},
		{bin.orchestrator, "../cmd/orchestrator", "", nil},
		{bin.runner, "../cmd/runner", "", []string{"CGO_ENABLED=0"}},
	} {
		cmd := exec.Command("go", "build", "-tags", b.tags, "-o", b.out, b.pkg)
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s (tags %q): %v\n%s", b.pkg, b.tags, err, out)
			os.Exit(1)
		}
	}
	chtest.Main(m)
}
