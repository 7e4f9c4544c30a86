package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// The threads that create namespaces go back to netlab's own namespace and
// serve again: none may be left, unlocked, inside a lab's namespace, where
// whatever Go runs on it next would act.
func TestCreationThreadsGoBackToNetlabsNamespace(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	l := newLab("threads").bridge("br0", "10.21.0.1/24")
	for i := range 24 {
		l.container(fmt.Sprintf("c%d", i), fmt.Sprintf("v%d", i), "br0", fmt.Sprintf("10.21.0.%d/24", i+2))
	}
	up(t, d, l.s)
	labNetns := map[uint64]string{}
	for ns := range l.s.Namespaces {
		var st unix.Stat_t
		if err := unix.Stat(sb.nsPath(ns), &st); err != nil {
			t.Fatal(err)
		}
		labNetns[st.Ino] = ns
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err != nil {
			continue // the thread has exited meanwhile
		}
		if ns, ok := labNetns[st.Ino]; ok {
			t.Errorf("thread %s is still inside the lab's namespace %s", task.Name(), ns)
		}
	}
}

// starOf is a star of n namespaces on one bridge, each with an address and a
// default route: the bench's lab, small.
func starOf(name string, n int) *lab {
	l := newLab(name).bridge("br0", "10.22.0.1/16")
	for i := range n {
		ns := fmt.Sprintf("c%d", i)
		l.container(ns, fmt.Sprintf("v%d", i), "br0", fmt.Sprintf("10.22.%d.%d/16", (i+2)/256, (i+2)%256))
		l.route(ns, "0.0.0.0/0", "10.22.0.1", "eth0")
	}
	return l
}

// A lab with more namespaces than the open-file limit has room for (a handle
// holds four descriptors: 5000 namespaces failed under the limit of 20000 of
// some containers, which cannot raise it) comes up, converges and goes down:
// the driver keeps as many namespaces open as fit and reopens the others.
func TestMoreNamespacesThanOpenFilesAllow(t *testing.T) {
	sb := newSandbox(t)
	harness.Netlab(t) // built before the limit is lowered
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	low := orig
	low.Cur = 300
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &orig) })
	d := sb.driver()
	l := starOf("many", 120)
	up(t, d, l.s)
	if got := planLines(t, d, l.s); len(got) != 0 {
		t.Errorf("a second up would change %d things: %v", len(got), got[:min(5, len(got))])
	}
	down(t, d, "many")
	if left, _ := os.ReadDir(sb.netnsDir); len(left) != 0 {
		t.Errorf("%d namespaces left after down", len(left))
	}
}

// A lab namespace netlab cannot open for want of descriptors is an error, never
// taken for someone else's: taken for foreign, a down would have left it and an
// up would have called the lab's own namespace a conflict.
func TestANamespaceThatCannotBeOpenedIsAnError(t *testing.T) {
	sb := newSandbox(t)
	up(t, sb.driver(), starOf("nofd", 4).s)
	d := sb.driver()
	_, done, err := d.use(r.Host) // the host's handle is opened with room to spare
	if err != nil {
		t.Fatal(err)
	}
	done()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	low := orig
	low.Cur = uint64(len(fds) + 2) // the directory read above is closed: three free
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	s, err := d.Observe(t.Context(), r.Query{Lab: "nofd"})
	unix.Setrlimit(unix.RLIMIT_NOFILE, &orig)
	if err == nil {
		t.Fatalf("observed without descriptors to open the namespaces, and no error: foreign namespaces %v", s.ForeignNetns)
	}
	// The namespaces are read first: their error, not a later step's.
	if !errors.Is(err, unix.EMFILE) || !strings.Contains(err.Error(), "netns c") {
		t.Fatalf("got %v, want a namespace that could not be opened, and the open-file limit named", err)
	}
}

// A handle in use is never closed to make room for others, and one that is
// idle is, once the handles hold more descriptors than the driver may keep.
func TestAHandleInUseIsNeverClosed(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, starOf("lru", 12).s)
	d.mu.Lock()
	d.maxFiles = 8 // room for two handles
	d.mu.Unlock()
	h, done, err := d.use("c0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 12; i++ {
		o, odone, err := d.use(fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dumpIfaceRows(o.rt); err != nil {
			t.Fatalf("c%d: %v", i, err)
		}
		odone()
	}
	if _, err := dumpIfaceRows(h.rt); err != nil {
		t.Fatalf("the handle in use was closed: %v", err)
	}
	if lo := loopbackOf(mustIfaceRows(t, h)); ownerOf(lo.alias) != "lru" {
		t.Fatalf("the handle in use reads another namespace: lo alias %q", lo.alias)
	}
	d.mu.Lock()
	open, files := len(d.handles), d.files
	d.mu.Unlock()
	if files > 8+h.files || open > 3 { // c0 in use, the host, and what fits
		t.Errorf("%d handles holding %d descriptors are open, room for 8 and the one in use", open, files)
	}
	done()
	d.mu.Lock()
	files = d.files
	d.mu.Unlock()
	if files > 8 {
		t.Errorf("the handle done with was not closed: %d descriptors held", files)
	}
	down(t, d, "lru")
}

func mustIfaceRows(t *testing.T, h *nsHandle) []ifaceRow {
	t.Helper()
	rows, err := dumpIfaceRows(h.rt)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// A namespace whose handle was closed to save descriptors is opened again by
// name; if the name leads to another namespace by then, nothing may be done
// there. Before, down killed the processes inside the other namespace and
// unmounted it on the strength of what was read of the lab's.
func TestANameThatLeadsElsewhereAfterItsHandleWasClosedIsRefused(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, starOf("lru", 6).s)
	if _, err := r.MakePlan(context.Background(), d, starOf("lru", 6).s); err != nil {
		t.Fatal(err) // every namespace read by this driver
	}
	d.mu.Lock()
	d.maxFiles = 4 // room for one handle: c0's is closed by the uses below
	d.mu.Unlock()
	for i := 1; i < 6; i++ {
		_, done, err := d.use(fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		done()
	}
	d.mu.Lock()
	_, open := d.handles["c0"]
	d.mu.Unlock()
	if open {
		t.Fatal("c0's handle is still open; the test needs it closed")
	}
	path := sb.replaceWithForeignNetns("c0")
	sleeper := exec.Command("nsenter", "--net="+path, "--", "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	waitUntilIn(t, sleeper.Process.Pid, path, "sleep")

	if _, _, err := d.use("c0"); err == nil || !strings.Contains(err.Error(), "another namespace") {
		t.Errorf("use of c0 after it was replaced: %v, want a refusal", err)
	}
	if err := d.deleteNetns("lru", "c0", nil); err == nil {
		t.Error("deleteNetns deleted the namespace that replaced c0")
	}
	if zombie(fmt.Sprintf("/proc/%d", sleeper.Process.Pid)) {
		t.Error("the process inside the other namespace was killed")
	}
	if what := d.plainNetnsFile("c0"); what != "" {
		t.Errorf("the other namespace c0 was unmounted: %s", what)
	}
}

// A namespace netlab creates has run none of its exec: commands, whatever the
// record of an earlier namespace of that name says: one deleted behind
// netlab's back (`ip netns del a`), then made again by an up that failed (or
// was killed) before its exec commands, must not have them skipped by the
// next up.
func TestANewNamespaceHasRunNoExecCommands(t *testing.T) {
	sb := newSandbox(t)
	desired := harness.DesiredFromText(t, "name: again\nnamespaces:\n  a:\n    exec: [\"true\"]\n")
	up(t, sb.driver(), desired)
	path := filepath.Join(sb.netnsDir, "a")
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	d := sb.driver()
	if err := d.Apply(context.Background(), r.CreateNetns{Lab: "again", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if got, want := planLines(t, d, desired), "+ exec    a: true"; !slices.Contains(got, want) {
		t.Errorf("plan after the namespace was made again: %q, want %q", got, want)
	}

	// Made again by the plan's script (ip netns add, then lo marked), whose
	// run failed before the commands: the record is of another namespace.
	up(t, sb.driver(), desired)
	sb.replaceWithForeignNetns("a")
	h := sb.netlinkAt("a")
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetAlias(lo, r.Marker("again")); err != nil {
		t.Fatal(err)
	}
	if got, want := planLines(t, sb.driver(), desired), "+ exec    a: true"; !slices.Contains(got, want) {
		t.Errorf("plan after the script made the namespace again: %q, want %q", got, want)
	}
	// Nor does the script's record of a second command count the first as run.
	if err := sb.driver().RecordExec("again", "a", 1, "true again"); err == nil {
		t.Error("command 2 recorded after command 1 of another namespace")
	}
}
