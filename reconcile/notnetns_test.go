package reconcile_test

import (
	"errors"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// TestObjectInPlaceOfANamespaceIsAConflict: a FIFO (or a directory, a link, a
// plain file) where the lab's namespace file would go is reported before any
// change, with what the kernel driver found there.
func TestObjectInPlaceOfANamespaceIsAConflict(t *testing.T) {
	desired := harness.DesiredFromText(t, "name: odd\nnamespaces:\n  web: {}\n  c2: {}\n")
	observed := r.NewState("odd")
	observed.NotNetns["web"] = "/run/netns/web is a FIFO, not a network namespace"
	observed.NotNetns["other"] = "/run/netns/other is a directory, not a network namespace"
	_, err := r.Diff(desired, observed)
	var conflict *r.ConflictError
	if !errors.As(err, &conflict) || len(conflict.Conflicts) != 1 || !strings.Contains(conflict.Conflicts[0], "/run/netns/web is a FIFO") {
		t.Fatalf("plan with a FIFO at /run/netns/web: %v, want one conflict naming it", err)
	}
	if c := observed.Clone(); len(c.NotNetns) != 2 {
		t.Errorf("Clone lost NotNetns: %v", c.NotNetns)
	}
	// Where the lab wants no namespace, another object is none of its business.
	if _, err := r.Diff(r.NewState("odd"), observed); err != nil {
		t.Errorf("down beside a FIFO in the namespace directory: %v", err)
	}
}
