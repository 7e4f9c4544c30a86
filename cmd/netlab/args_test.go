package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestMissingLabFileIsNamed: every command that takes the lab file says so
// when it is missing, instead of cobra's "accepts 1 arg(s), received 0". None
// of them reaches the kernel.
func TestMissingLabFileIsNamed(t *testing.T) {
	for _, name := range []string{"validate", "plan", "up", "test", "graph"} {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), []string{name}, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
		want := "netlab: " + name + " needs the lab file: netlab " + name + " FILE"
		if code != 1 || !strings.HasPrefix(errOut.String(), want) {
			t.Errorf("netlab %s: exit %d, stderr %q; want %q", name, code, errOut.String(), want)
		}
		errOut.Reset()
		code = Run(context.Background(), []string{name, "a.yaml", "b\x1b.yaml"}, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
		if want := `netlab: ` + name + ` takes one lab file, got 2 arguments: "a.yaml" "b\x1b.yaml"`; code != 1 || !strings.HasPrefix(errOut.String(), want) {
			t.Errorf("netlab %s a b: exit %d, stderr %q; want %q", name, code, errOut.String(), want)
		}
	}
}
