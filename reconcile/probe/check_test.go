package probe

import (
	"context"
	"errors"
	"testing"
)

// A check whose target name cannot be resolved sends nothing; expected to
// fail, it passes only from a namespace that is the lab's: from one that is
// not (deleted, another lab's), nothing shows that the lab blocks anything.
func TestAnUnresolvedTargetPassesOnlyFromTheLabsNamespace(t *testing.T) {
	c := Check{Name: "c2 -> ping web (expect fail)", From: "c2", Kind: "ping", Target: "web", ExpectFail: true, Unresolved: "c2 cannot resolve web"}
	inLab := func(ns string, f func() error) error { return f() }
	notLabs := func(ns string, f func() error) error { return errors.New("lab x has no namespace " + ns) }
	if r := Run(context.Background(), []Check{c}, inLab)[0]; !r.Pass || r.NotRun {
		t.Errorf("from the lab's namespace: %+v, want a pass (blocked)", r)
	}
	if r := Run(context.Background(), []Check{c}, notLabs)[0]; r.Pass || !r.NotRun {
		t.Errorf("from a namespace that is not the lab's: %+v, want not run", r)
	}
}
