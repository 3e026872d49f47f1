//go:build !chdb

package chembed

import (
	"errors"
	"testing"
)

// A binary built without the chdb tag says so when asked for the embedded
// store, instead of failing somewhere inside. Built only without the tag:
// the chdb build has its own tests of Open, so neither build skips this.
func TestOpenWithoutChDB(t *testing.T) {
	if Available() {
		t.Fatal("Available() in a build without the chdb tag")
	}
	if _, err := Open(t.Context(), ""); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Open = %v, want ErrNotBuilt", err)
	}
}
