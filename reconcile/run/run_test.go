package run_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
	"netlab/reconcile/run"
	"netlab/topology"
)

const labFile = "../../labs/docker-bridge.yaml"

func loadLab(t *testing.T) run.Lab {
	t.Helper()
	lab, err := topology.Load(labFile)
	if err != nil {
		t.Fatal(err)
	}
	desired, err := r.Desired(lab)
	if err != nil {
		t.Fatal(err)
	}
	return run.Lab{File: labFile, Topology: lab, Desired: desired}
}

// locks records what a run does with the lab's lock.
type locks struct {
	mu     sync.Mutex
	log    []string
	holder string
}

func (l *locks) lock(_ context.Context, lab string) (run.Release, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != "" {
		return nil, fmt.Errorf("lab %s is locked already", lab)
	}
	l.holder = lab
	l.log = append(l.log, "lock "+lab)
	return func(remove bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.holder = ""
		l.log = append(l.log, fmt.Sprintf("release remove=%v", remove))
	}, nil
}

func (l *locks) took(t *testing.T, want ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if got := strings.Join(l.log, ", "); got != strings.Join(want, ", ") {
		t.Errorf("lock: %s, want %s", got, strings.Join(want, ", "))
	}
	l.log = nil
}

func options(out *bytes.Buffer, l *locks) run.Options {
	out.Reset()
	return run.Options{Out: out, Lock: l.lock}
}

// session is a fake kernel with the docker-bridge lab, and what up and down print.
type session struct {
	t   *testing.T
	d   *fake.Driver
	l   *locks
	lab run.Lab
	out bytes.Buffer
}

func newSession(t *testing.T) *session {
	return &session{t: t, d: fake.New(), l: &locks{}, lab: loadLab(t)}
}

// up runs up, which must succeed, and returns what it printed.
func (s *session) up() string {
	s.t.Helper()
	if err := run.Up(context.Background(), s.d, s.lab, options(&s.out, s.l)); err != nil {
		s.t.Fatal(err)
	}
	s.l.took(s.t, "lock docker-bridge", "release remove=false")
	return s.out.String()
}

// down runs down, which must succeed, and returns what it printed.
func (s *session) down() string {
	s.t.Helper()
	if err := run.Down(context.Background(), s.d, "docker-bridge", options(&s.out, s.l)); err != nil {
		s.t.Fatal(err)
	}
	s.l.took(s.t, "lock docker-bridge", "release remove=true")
	return s.out.String()
}

// TestUpThenUpIsEmpty: up locks the lab, prints the plan, records the file,
// applies, verifies and says so; a second up prints "No changes." and writes
// nothing.
func TestUpThenUpIsEmpty(t *testing.T) {
	s := newSession(t)
	if out := s.up(); !strings.Contains(out, "+ netns   web") || !strings.Contains(out, "Apply complete: ") {
		t.Errorf("first up printed:\n%s", out)
	}
	if file, ok := s.d.LabFile("docker-bridge"); !ok || file != labFile {
		t.Errorf("recorded file %q (%v), want %s", file, ok, labFile)
	}
	writes := s.d.Writes
	if out := s.up(); out != "No changes.\n" || s.d.Writes != writes {
		t.Errorf("second up printed %q and wrote %d times", out, s.d.Writes-writes)
	}
}

// TestDownForgets: down removes every object of the lab, forgets its records
// and removes its lock file; a second down has nothing to do.
func TestDownForgets(t *testing.T) {
	s := newSession(t)
	s.up()
	if out := s.down(); !strings.Contains(out, "- netns   web") || !strings.HasSuffix(out, "Lab docker-bridge is down.\n") {
		t.Errorf("down printed:\n%s", out)
	}
	if _, ok := s.d.LabFile("docker-bridge"); ok {
		t.Error("down left the lab's record")
	}
	st, err := s.d.Observe(context.Background(), r.Query{Lab: "docker-bridge"})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Namespaces)+len(st.Interfaces)+len(st.Tables)+len(st.Processes)+len(st.Files) != 0 {
		t.Errorf("down left %d namespaces, %d links, %d tables, %d processes, %d files",
			len(st.Namespaces), len(st.Interfaces), len(st.Tables), len(st.Processes), len(st.Files))
	}
	if out := s.down(); out != "No changes.\n" {
		t.Errorf("second down printed %q", out)
	}
}

// TestFailedStepIsReportedAndNextUpConverges: a failing action fails up with
// the step named (a *reconcile.StepError, which the command turns into advice),
// the lock is released, and the next up does the rest.
func TestFailedStepIsReportedAndNextUpConverges(t *testing.T) {
	s := newSession(t)
	s.d.Fail = func(a r.Action) error {
		if _, ok := a.(r.CreateVeth); ok {
			return errors.New("injected failure")
		}
		return nil
	}
	err := run.Up(context.Background(), s.d, s.lab, options(&s.out, s.l))
	var step *r.StepError
	if !errors.As(err, &step) || !strings.Contains(err.Error(), "(+ veth ") || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("up: %v, want a failed veth step", err)
	}
	if _, ok := step.Action.(r.CreateVeth); !ok || !strings.HasPrefix(err.Error(), fmt.Sprintf("apply step %d/", step.Step)) {
		t.Errorf("step %d names %T: %v", step.Step, step.Action, err)
	}
	s.l.took(t, "lock docker-bridge", "release remove=false")
	s.d.Fail = nil
	if out := s.up(); strings.Contains(out, "+ netns") || !strings.Contains(out, "+ veth") {
		t.Errorf("the second up did not start where the first stopped:\n%s", out)
	}
	if out := s.up(); out != "No changes.\n" {
		t.Errorf("third up printed:\n%s", out)
	}
}

// TestDownCarriesOnPastAFailure: a failing deletion does not stop the others;
// down then keeps the lab's records and asks to be run again, which finishes.
func TestDownCarriesOnPastAFailure(t *testing.T) {
	s := newSession(t)
	s.up()
	s.d.Fail = func(a r.Action) error {
		if a, ok := a.(r.DeleteNetns); ok && a.Name == "web" {
			return errors.New("busy")
		}
		return nil
	}
	err := run.Down(context.Background(), s.d, "docker-bridge", options(&s.out, s.l))
	if err == nil || !strings.Contains(err.Error(), "busy") || !strings.Contains(err.Error(), `run "netlab down --lab docker-bridge" again to finish`) {
		t.Fatalf("down: %v", err)
	}
	s.l.took(t, "lock docker-bridge", "release remove=false")
	if _, ok := s.d.LabFile("docker-bridge"); !ok {
		t.Error("a failed down forgot the lab")
	}
	st, _ := s.d.Observe(context.Background(), r.Query{Lab: "docker-bridge"})
	if len(st.Namespaces) != 1 || st.Namespaces["web"] == nil {
		t.Errorf("after a failed down, namespaces %v: want only web", st.Namespaces)
	}
	s.d.Fail = nil
	s.down()
}

// TestDownThatCannotStopAProcessChangesNothing: a process this run cannot
// stop (in a cgroup it cannot write) refuses the whole down before any change,
// without the advice to run down again (which would refuse again), and the
// plan is still printed.
func TestDownThatCannotStopAProcessChangesNothing(t *testing.T) {
	s := newSession(t)
	s.up()
	st, _ := s.d.Observe(context.Background(), r.Query{Lab: "docker-bridge"})
	s.d.Unstoppable = map[r.ProcKey]string{}
	for k := range st.Processes {
		s.d.Unstoppable[k] = "it runs in cgroup X, which this run cannot write"
	}
	if len(s.d.Unstoppable) == 0 {
		t.Fatal("the lab has no process: the test proves nothing")
	}
	writes := s.d.Writes
	err := run.Down(context.Background(), s.d, "docker-bridge", options(&s.out, s.l))
	var refused *r.RefusedError
	if !errors.As(err, &refused) || strings.Contains(err.Error(), "again") {
		t.Fatalf("down: %v, want a refusal", err)
	}
	s.l.took(t, "lock docker-bridge", "release remove=false")
	if s.d.Writes != writes {
		t.Errorf("the refused down made %d changes", s.d.Writes-writes)
	}
	if out := s.out.String(); !strings.Contains(out, "- netns   web") || !strings.Contains(out, "Refused: this run cannot carry out the plan: ") {
		t.Errorf("down printed:\n%s", out)
	}
	s.d.Unstoppable = nil
	s.down()
}

// TestWrongNetnsChangesNothing: a lab worked on from another network namespace
// is refused before anything is planned, and the lock is released.
func TestWrongNetnsChangesNothing(t *testing.T) {
	s := newSession(t)
	s.d.NetnsErr = errors.New("wrong namespace")
	if err := run.Up(context.Background(), s.d, s.lab, options(&s.out, s.l)); err == nil || err.Error() != "wrong namespace" {
		t.Fatalf("up: %v", err)
	}
	if s.d.Writes != 0 || s.out.Len() != 0 {
		t.Errorf("up wrote %d times and printed %q", s.d.Writes, s.out.String())
	}
	s.l.took(t, "lock docker-bridge", "release remove=false")
}

// slowDriver is the fake, counting how many actions run at once.
type slowDriver struct {
	*fake.Driver
	now, most atomic.Int32
}

func (s *slowDriver) Apply(ctx context.Context, a r.Action) error {
	if _, ok := a.(r.StartProcess); ok {
		return s.Driver.Apply(ctx, a) // not bounded by Concurrency (see StartProcess.Unbounded)
	}
	n := s.now.Add(1)
	defer s.now.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	time.Sleep(time.Millisecond)
	return s.Driver.Apply(ctx, a)
}

// TestConcurrencyIsAParameter: Options.Concurrency bounds how many actions of
// a phase run at once (but starts of processes, which bound themselves).
func TestConcurrencyIsAParameter(t *testing.T) {
	for _, limit := range []int{1, 2} {
		d := &slowDriver{Driver: fake.New()}
		var out bytes.Buffer
		o := run.Options{Out: &out, Concurrency: limit}
		if err := run.Up(context.Background(), d, loadLab(t), o); err != nil {
			t.Fatal(err)
		}
		if most := int(d.most.Load()); most != limit {
			t.Errorf("Concurrency %d: %d actions ran at once", limit, most)
		}
	}
}
