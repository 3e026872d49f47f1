package main

import (
	"testing"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// The benchmarks here start the built binary against the package's private
// ClickHouse server.
func TestMain(m *testing.M) { chtest.Main(m) }
