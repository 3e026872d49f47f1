package lpnet_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// protocVersionLine is the one line that names the protoc binary's version;
// Debian's and upstream's protoc emit the same code, so that line alone may
// differ between machines.
var protocVersionLine = regexp.MustCompile(`(?m)^// (-|\t)? ?protoc +v.*$`)

// TestGeneratedCodeIsCurrent fails when lp_rpc.proto and the committed Go
// code disagree, so nobody edits one without regenerating the other.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("protoc is required under CI (apt-get install -y protobuf-compiler): %v", err)
		}
		t.Skip("protoc not installed; CI runs this check")
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "../gen.sh", out)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, b)
	}
	for _, name := range []string{"lp_rpc.pb.go", "lp_rpc_grpc.pb.go"} {
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		want = protocVersionLine.ReplaceAll(want, nil)
		got = protocVersionLine.ReplaceAll(got, nil)
		if !bytes.Equal(want, got) {
			t.Errorf("%s is stale: run schemas/proto/gen.sh and commit the result", name)
		}
	}
}
