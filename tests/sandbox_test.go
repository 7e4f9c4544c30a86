package tests

// End-to-end tests of the built binary; each runs in a sandbox of its own (see
// harness.Sandbox).

import (
	"testing"

	"netlab/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
