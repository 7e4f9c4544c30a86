package kernel

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"netlab/reconcile/probe"
	"netlab/tests/harness"
)

const processLab = `
name: procs
bridges:
  mynet: {addresses: [172.18.0.1/16], resolve: true}
  plain: {addresses: [172.19.0.1/16]}
namespaces:
  web:
    interfaces: {eth0: {addresses: [172.18.0.2/16]}}
    serve:
      - {http: 80, body: "Hello World"}
    run: ["sleep 1000"]
  c4:
    interfaces: {eth0: {addresses: [172.18.0.3/16]}}
  lone:
    interfaces: {eth0: {addresses: [172.19.0.2/16]}}
links:
  - [web:eth0, mynet]
  - [c4:eth0, mynet]
  - [lone:eth0, plain]
`

// labProcesses lists the processes of a lab by their marker, as /proc shows them:
// for each command, the process netlab started (the lowest PID; a `sh -c` may
// have children carrying the same marks).
func labProcesses(t *testing.T, lab string) map[string]int {
	t.Helper()
	procs, err := listProcesses()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range procs {
		if p.lab == lab && (out[p.command] == 0 || p.pid < out[p.command]) {
			out[p.command] = p.pid
		}
	}
	return out
}

func TestProcessesStartOnceRestartAndStop(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, processLab)
	up(t, d, desired)

	serveCmd := `netlab serve --http 80 --body 'Hello World'`
	running := labProcesses(t, "procs")
	if len(running) != 2 || running["sleep 1000"] == 0 || running[serveCmd] == 0 {
		t.Fatalf("processes of the lab after up: %v, want sleep 1000 and %s", running, serveCmd)
	}
	// The built-in server answers from inside the lab.
	res := probe.Run(context.Background(), []probe.Check{{From: "c4", Kind: "http", Target: "http://172.18.0.2/", ExpectBody: "Hello World"}}, d.RunIn)
	if !res[0].Pass {
		t.Errorf("http from c4 to web's built-in server: %s", res[0].Detail)
	}

	// A second up leaves running processes alone.
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("second plan: %v", got)
	}
	up(t, d, desired)
	if again := labProcesses(t, "procs"); !cmp.Equal(again, running) {
		t.Errorf("a no-op up touched the processes: %v -> %v", running, again)
	}

	// Killed by hand (the process group, as kill -- -PGID): up starts it again, and only it.
	if err := terminate(nil, []int{running["sleep 1000"]}); err != nil { // the group: sh and the sleep it runs
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"+ process web: sleep 1000"}, planLines(t, d, desired)); diff != "" {
		t.Errorf("plan after the process died (-want +got):\n%s", diff)
	}
	up(t, d, desired)
	after := labProcesses(t, "procs")
	if after["sleep 1000"] == 0 || after["sleep 1000"] == running["sleep 1000"] || after[serveCmd] != running[serveCmd] {
		t.Errorf("after restart: %v (before %v): want a new sleep and the same server", after, running)
	}

	// A changed command: the old process stops, the new one starts.
	desired = harness.DesiredFromText(t, strings.Replace(processLab, "sleep 1000", "sleep 1001", 1))
	got := up(t, d, desired)
	if len(got) != 2 || !strings.HasPrefix(got[0], "- process web: sleep 1000 (pid ") || got[1] != "+ process web: sleep 1001" {
		t.Errorf("plan of an edited command: %q", got)
	}
	if now := labProcesses(t, "procs"); now["sleep 1000"] != 0 || now["sleep 1001"] == 0 {
		t.Errorf("after editing the command: %v", now)
	}

	// Down leaves no process in any lab namespace.
	down(t, d, "procs")
	if left := labProcesses(t, "procs"); len(left) != 0 {
		t.Errorf("processes left after down: %v", left)
	}
}

func TestNamesResolveOnResolvingBridgesOnly(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, harness.DesiredFromText(t, processLab))

	hosts, err := os.ReadFile(sb.etcDir + "/c4/hosts")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"172.18.0.2\tweb\n", "172.18.0.3\tc4\n", "127.0.0.1\tlocalhost\n"} {
		if !strings.Contains(string(hosts), want) {
			t.Errorf("/etc/netns/c4/hosts lacks %q:\n%s", want, hosts)
		}
	}
	if _, err := os.Stat(sb.etcDir + "/lone"); !os.IsNotExist(err) {
		t.Errorf("lone is on a bridge without resolve, yet has /etc/netns/lone: %v", err)
	}

	// As a student would check it: getent inside c4 finds web; inside lone it does not.
	if out := sb.execIn(t, d, "c4", "getent", "hosts", "web"); !strings.Contains(out, "172.18.0.2") {
		t.Errorf("getent hosts web in c4: %q", out)
	}
	if out := sb.execIn(t, d, "lone", "getent", "hosts", "web"); strings.Contains(out, "172.18") {
		t.Errorf("lone resolved web: %q", out)
	}
	// exec sees the namespace's own interfaces in /sys, as ip netns exec does.
	if out := sb.execIn(t, d, "c4", "ls", "/sys/class/net"); !strings.Contains(out, "eth0") {
		t.Errorf("ls /sys/class/net in c4: %q", out)
	}

	down(t, d, "procs")
	if entries, _ := os.ReadDir(sb.etcDir); len(entries) != 0 {
		t.Errorf("/etc/netns after down: %v", entries)
	}
}

// execIn runs a command in a lab namespace through Driver.Exec and returns its output.
func (sb *sandbox) execIn(t *testing.T, d *Driver, ns string, argv ...string) string {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := d.Exec(ns, argv, nil, out, out); err != nil {
		t.Fatalf("exec %v in %s: %v", argv, ns, err)
	}
	b, _ := os.ReadFile(out.Name())
	return string(b)
}

// A lab process that ignores SIGTERM and forks a new child after down has read
// the process list: the child must go with its group, or it would keep the
// namespace alive.
func TestDownStopsWhatALabProcessForksLate(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, harness.DesiredFromText(t, `
name: late
namespaces:
  web:
    run: ["trap '' TERM; sleep 0.5; sleep 1000"]
`))
	down(t, d, "late")
	if left := labProcesses(t, "late"); len(left) != 0 {
		t.Errorf("processes left after down: %v", left)
	}
}

// Only a group netlab made for the lab is signalled as a group, and only when its
// leader is to be stopped too. A process the lab's shell script started with `&`
// shares the group of whoever ran the script (a shell, make, go test); a lab
// command in another namespace may have sent one child into the namespace being
// deleted; netlab may run inside a lab command's group: each is stopped alone.
func TestStopTargetsSignalOnlyTheLabsOwnGroups(t *testing.T) {
	self := procInfo{pid: 501, pgid: 500}
	procs := []procInfo{
		{pid: 100, pgid: 100, sid: 100, lab: "l", ns: "web", command: "sleep 1"}, // started by netlab: setsid
		{pid: 101, pgid: 100, sid: 100, lab: "l", ns: "web", command: "sleep 1"}, // the child its sh forked
		{pid: 200, pgid: 50, sid: 40, lab: "l", ns: "web", command: "sleep 2"},   // started by the commands script
		{pid: 300, pgid: 300, sid: 300, lab: "other", ns: "web"},                 // another lab's leader
		{pid: 301, pgid: 300, sid: 300, ns: "web"},                               // and its unmarked child
		{pid: 400, pgid: 400, sid: 400, lab: "l", ns: "db", command: "watch"},    // a lab command elsewhere...
		{pid: 401, pgid: 400, sid: 400, lab: "l", ns: "db", command: "watch"},    // ...whose child entered web
		{pid: 500, pgid: 500, sid: 500, lab: "l", ns: "web", command: "up.sh"},   // netlab's own group...
		{pid: 501, pgid: 500, sid: 500, lab: "l", ns: "web", command: "up.sh"},   // ...and netlab itself
	}
	inWeb := func(p procInfo) bool { return p.ns == "web" || p.pid == 401 }
	pids, groups := stopTargets(procs, "l", self, inWeb)
	wantPids := []int{200, 300, 301, 401, 500}
	if !cmp.Equal(pids, wantPids) || !cmp.Equal(groups, []int{100, 100}) {
		t.Errorf("pids %v, groups %v: want pids %v, groups [100 100]", pids, groups, wantPids)
	}
}
