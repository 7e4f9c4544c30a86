package kernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	r "netlab/reconcile"
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

// labProcesses lists the processes of a lab by the marks netlab still puts in
// their environment (information, not how netlab finds them): for each command,
// the process netlab started (the lowest PID; a `sh -c` may have children
// carrying the same marks).
func labProcesses(t *testing.T, lab string) map[string]int {
	t.Helper()
	out := map[string]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(dir))
		env, _ := os.ReadFile(dir + "/environ")
		if zombie(dir) || !bytes.Contains(env, []byte("\x00NETLAB_LAB="+lab+"\x00")) && !bytes.HasPrefix(env, []byte("NETLAB_LAB="+lab+"\x00")) {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if command, ok := bytes.CutPrefix(kv, []byte("NETLAB_RUN=")); ok && (out[string(command)] == 0 || pid < out[string(command)]) {
				out[string(command)] = pid
			}
		}
	}
	return out
}

// tracking runs a test once with each way of tracking the lab's processes:
// cgroups (when this machine has a writable cgroup v2) and pidfds with start
// times, the fallback, forced.
func tracking(t *testing.T, test func(t *testing.T, sb *sandbox, d *Driver)) {
	for _, mode := range []string{"cgroup", "pidfd"} {
		t.Run(mode, func(t *testing.T) {
			sb := newSandbox(t)
			d := sb.driver()
			switch {
			case mode == "pidfd":
				d.cgroupMount = ""
			case d.cgroupMount == "":
				t.Skip("no writable cgroup v2 on this machine")
			}
			test(t, sb, d)
		})
	}
}

func TestProcessesStartOnceRestartAndStop(t *testing.T) {
	tracking(t, testProcessesStartOnceRestartAndStop)
}

func testProcessesStartOnceRestartAndStop(t *testing.T, sb *sandbox, d *Driver) {
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
	downLeavesNoProcesses(t, d, "procs")
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
	// The descriptor the namespace was passed by is not left to the command:
	// it would hold the namespace as long as the command runs.
	if out := sb.execIn(t, d, "c4", "sh", "-c", "readlink /proc/$$/fd/3 || echo none"); strings.TrimSpace(out) != "none" {
		t.Errorf("a command in c4 has netlab's descriptor 3: %q", out)
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

// downLeavesNoProcesses brings a lab down and fails the test if any of its
// processes is left.
func downLeavesNoProcesses(t *testing.T, d *Driver, lab string) {
	t.Helper()
	down(t, d, lab)
	if left := labProcesses(t, lab); len(left) != 0 {
		t.Errorf("processes left after down: %v", left)
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
	if _, err := d.Exec(ns, argv, nil, out, out, nil); err != nil {
		t.Fatalf("exec %v in %s: %v", argv, ns, err)
	}
	b, _ := os.ReadFile(out.Name())
	return string(b)
}

// A lab process that ignores SIGTERM and forks a new child after down has read
// the process list: the child must go with its group, or it would keep the
// namespace alive.
func TestDownStopsWhatALabProcessForksLate(t *testing.T) {
	tracking(t, testDownStopsWhatALabProcessForksLate)
}

func testDownStopsWhatALabProcessForksLate(t *testing.T, sb *sandbox, d *Driver) {
	up(t, d, harness.DesiredFromText(t, `
name: late
namespaces:
  web:
    run: ["trap '' TERM; sleep 0.5; sleep 1000"]
`))
	downLeavesNoProcesses(t, d, "late")
}

// countRunning counts the live processes whose command line is argv.
func countRunning(argv ...string) int {
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		cmdline, _ := os.ReadFile(dir + "/cmdline")
		if string(cmdline) == strings.Join(argv, "\x00")+"\x00" && !zombie(dir) {
			n++
		}
	}
	return n
}

// A process that drops its environment (env -i) is still the lab's: one copy
// after two ups, on the host side and in a namespace, and none after down.
func TestProcessesWithoutEnvironmentAreTheLabs(t *testing.T) {
	tracking(t, func(t *testing.T, sb *sandbox, d *Driver) {
		desired := harness.DesiredFromText(t, `
name: bare
host:
  run: ["exec env -i /bin/sleep 1001.25"]
namespaces:
  web:
    run: ["exec env -i /bin/sleep 1001.5"]
`)
		up(t, d, desired)
		up(t, d, desired)
		if got := planLines(t, d, desired); len(got) != 0 {
			t.Errorf("plan after two ups: %q", got)
		}
		// up returns once the shell runs; env may still be on its way to sleep:
		// wait for both, and a moment more for any other copy.
		host, web := 0, 0
		for deadline := time.Now().Add(3 * time.Second); (host == 0 || web == 0) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			host, web = countRunning("/bin/sleep", "1001.25"), countRunning("/bin/sleep", "1001.5")
		}
		time.Sleep(300 * time.Millisecond)
		if host, web = countRunning("/bin/sleep", "1001.25"), countRunning("/bin/sleep", "1001.5"); host != 1 || web != 1 {
			t.Errorf("after two ups: %d copies on the host, %d in web; want one each", host, web)
		}
		down(t, d, "bare")
		if host, web = countRunning("/bin/sleep", "1001.25"), countRunning("/bin/sleep", "1001.5"); host != 0 || web != 0 {
			t.Errorf("after down: %d copies on the host, %d in web; want none", host, web)
		}
	})
}

// Observing the lab's processes reads the lab's own cgroups, not /proc: with
// /proc pointed at an empty directory, the plan still sees every process
// running, and an edited command's old process by its PID.
func TestObservingProcessesDoesNotReadProc(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	if d.cgroupMount == "" {
		t.Skip("no writable cgroup v2 on this machine")
	}
	desired := harness.DesiredFromText(t, processLab)
	up(t, d, desired)
	running := labProcesses(t, "procs")
	procRoot = t.TempDir()
	defer func() { procRoot = "/proc" }()
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("no-op plan without /proc: %q", got)
	}
	edited := harness.DesiredFromText(t, strings.Replace(processLab, "sleep 1000", "sleep 1001", 1))
	got := planLines(t, d, edited)
	if len(got) != 2 || !strings.HasPrefix(got[0], "- process web: sleep 1000 (pid "+strconv.Itoa(running["sleep 1000"])) || got[1] != "+ process web: sleep 1001" {
		t.Errorf("plan of an edited command without /proc: %q", got)
	}
}

// A process someone else started inside a lab namespace (ip netns exec web
// sleep ...) is the lab's by its namespace: down stops it.
func TestDownStopsOthersProcessesInTheLabsNamespaces(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, harness.DesiredFromText(t, "name: foreign\nnamespaces:\n  web: {}\n"))
	cmd := exec.Command("nsenter", "--net="+sb.nsPath("web"), "--", "/bin/sleep", "1001.75")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Start returns when nsenter runs, not when sleep runs in web: a down
	// before that would find nothing there to stop.
	waitUntilIn(t, cmd.Process.Pid, sb.nsPath("web"), "sleep")
	down(t, d, "foreign")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Errorf("a process started by hand in web still runs after down")
	}
}

// waitUntilIn waits until process pid runs comm inside the network namespace
// at nsPath.
func waitUntilIn(t *testing.T, pid int, nsPath, comm string) {
	t.Helper()
	var want unix.Stat_t
	if err := unix.Stat(nsPath, &want); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var st unix.Stat_t
		name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(name)) == comm &&
			unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			return
		}
	}
	t.Fatalf("process %d never ran %s in %s", pid, comm, nsPath)
}

// An entry whose own process ended while what it forked runs on (a shell that
// starts a server in the background and exits) is running, and down stops what
// it forked. Without cgroups this used to be missed: the next up started a
// second copy, and down left the first running.
func TestAnEntryWhoseProcessEndedRunsOnInItsForks(t *testing.T) {
	tracking(t, func(t *testing.T, sb *sandbox, d *Driver) {
		const command = "sleep 1040.5 & sleep 0.2"
		// On the host: down deletes a lab namespace with everything inside, so only
		// there does the entry alone decide what down stops.
		desired := harness.DesiredFromText(t, "name: forks\nhost:\n  run: [\""+command+"\"]\n")
		up(t, d, desired)
		time.Sleep(time.Second) // the shell has ended; its background sleep runs on
		if running := labProcesses(t, "forks"); running[command] == 0 {
			t.Fatalf("the background sleep is not running: %v", running)
		}
		if got := planLines(t, d, desired); len(got) != 0 {
			t.Errorf("plan with the entry's fork running: %q, want nothing (it runs)", got)
		}
		downLeavesNoProcesses(t, d, "forks")
	})
}

// Whether netlab may write cgroups can differ between two runs (an up from a
// shell, a down from a unit with a read-only /sys/fs/cgroup). Host processes
// started without cgroups are stopped by a run that has them; those started in
// cgroups make a run that cannot write them refuse, rather than call the lab
// down while they run on.
func TestProcessesOfARunWithOtherCgroupRights(t *testing.T) {
	sb := newSandbox(t)
	if sb.driver().cgroupMount == "" {
		t.Skip("no writable cgroup v2 on this machine")
	}
	pidfds := sb.driver()
	pidfds.cgroupMount = ""
	up(t, pidfds, harness.DesiredFromText(t, "name: bypid\nhost:\n  run: [\"sleep 1042\"]\n"))
	if running := labProcesses(t, "bypid"); running["sleep 1042"] == 0 {
		t.Fatalf("not started: %v", running)
	}
	down(t, sb.driver(), "bypid")
	if left := labProcesses(t, "bypid"); len(left) != 0 {
		t.Errorf("a run with cgroups left the processes a run without started: %v", left)
	}

	desired := harness.DesiredFromText(t, "name: bycg\nhost:\n  run: [\"sleep 1043\"]\nnamespaces:\n  a:\n    run: [\"sleep 1045\"]\n")
	up(t, sb.driver(), desired)
	readOnly := sb.driver()
	readOnly.cgroupMount = ""
	// Reading who runs in a cgroup needs no right to write it: the run sees
	// the processes running (status, a no-op up)...
	if got := planLines(t, readOnly, desired); len(got) != 0 {
		t.Errorf("plan by a run that cannot write the lab's cgroups: %q, want nothing (it runs)", got)
	}
	observed, err := readOnly.Observe(context.Background(), r.Query{Lab: "bycg"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []r.ProcKey{{NS: r.Host, Command: "sleep 1043"}, {NS: "a", Command: "sleep 1045"}} {
		if p := observed.Processes[k]; p == nil || len(p.PIDs) == 0 {
			t.Errorf("observed by a run that cannot write the lab's cgroups: %+v, want %v running with its PIDs", p, k)
		}
	}
	// ...and refuses a plan that would stop them, the host's or one whose
	// namespace it deletes, before it changes anything; the plan is still
	// shown (status keeps its drift).
	plan, err := r.MakePlan(context.Background(), readOnly, r.NewState("bycg"))
	if err != nil {
		t.Fatalf("plan of the down: %v", err)
	}
	stopsHost := func(l string) bool { return strings.HasPrefix(l, "- process host: sleep 1043 (pid ") }
	if got := lines(plan); !slices.ContainsFunc(got, stopsHost) || !slices.Contains(got, "- netns   a") {
		t.Errorf("plan of the down: %q, want the host's process stopped and a deleted", got)
	}
	err = r.Apply(context.Background(), readOnly, plan)
	for _, want := range []string{"nothing was changed", `netns host: "sleep 1043" cannot be stopped: it runs in cgroup `, `netns a: "sleep 1045" cannot be stopped`, "cannot write"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("down by a run that cannot write the lab's cgroups: %v, want a refusal with %q", err, want)
		}
	}
	if running := labProcesses(t, "bycg"); running["sleep 1043"] == 0 || running["sleep 1045"] == 0 {
		t.Errorf("the refused down stopped a process anyway: %v", running)
	}
	if _, err := os.Stat(sb.nsPath("a")); err != nil {
		t.Errorf("the refused down deleted namespace a: %v", err)
	}
	down(t, sb.driver(), "bycg")
}

// A lab process may make cgroups of its own below its entry's (a container
// runtime, systemd-run): down stops what runs there too and removes them with
// the entry's. Before, the entry's rmdir failed with EBUSY on every down.
func TestDownRemovesCgroupsALabProcessMade(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	if d.cgroupMount == "" {
		t.Skip("no writable cgroup v2 on this machine")
	}
	// Inside, /sys is the namespace's own sysfs (as ip netns exec makes it), so
	// the process mounts the cgroup hierarchy itself, as a runtime would.
	const command = "mount -t cgroup2 none /sys/fs/cgroup && d=/sys/fs/cgroup$(sed -n s/^0:://p /proc/self/cgroup); mkdir $d/sub && echo $$ >$d/sub/cgroup.procs && exec sleep 1044"
	desired := harness.DesiredFromText(t, "name: subcg\nhost:\n  run: [\""+command+"\"]\n")
	up(t, d, desired)
	base, err := d.cgroupBase()
	if err != nil {
		t.Fatal(err)
	}
	entry := entryCgroup(base, "subcg", "host", command)
	for deadline := time.Now().Add(5 * time.Second); !cgroupPopulated(entry + "/sub"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the process never moved into %s/sub", entry)
		}
	}
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("plan with the entry's process in a cgroup below its own: %q, want nothing (it runs)", got)
	}
	down(t, d, "subcg")
	if _, err := os.Stat(entry); !os.IsNotExist(err) {
		t.Errorf("the entry's cgroup is still there after down: %v", err)
	}
	if left := labProcesses(t, "subcg"); len(left) != 0 {
		t.Errorf("processes left after down: %v", left)
	}
}

// Without cgroups, a process group whose leader has the number of a recorded
// entry, started at another time, is someone else's even with the entry's
// marks and namespace: the entry's group ended before the number was given
// again (a daemon's double fork, or the same lab in another sandbox).
func TestAGroupThatTookARecordedNumberIsNotTheEntrys(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	cmd := exec.Command("nsenter", "--net="+sb.nsPath("host"), "--", "setsid", "sleep", "60.25")
	cmd.Env = append(os.Environ(), r.EnvLab+"=grp", r.EnvNS+"=host", r.EnvRun+"=sleep 60.25")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUntilIn(t, cmd.Process.Pid, sb.nsPath("host"), "sleep")
	dir := fmt.Sprintf("/proc/%d", cmd.Process.Pid)
	_, group, start, ok := readStat(dir)
	if !ok || group != cmd.Process.Pid {
		t.Fatalf("the sleeper does not lead its group: pgid %d", group)
	}
	if !d.recordRunning("grp", "host", procRecord{Command: "sleep 60.25", PID: cmd.Process.Pid, Start: start}) {
		t.Error("the recorded process itself is not taken for running")
	}
	if d.recordRunning("grp", "host", procRecord{Command: "sleep 60.25", PID: cmd.Process.Pid, Start: start - 1}) {
		t.Error("a group that took the recorded number later is taken for the entry's")
	}
}

// A namespace deleted by hand (ip netns del) keeps what runs inside running,
// nameless; down stops the lab's processes there all the same, before it
// forgets them: with cgroups by the entry's cgroup, without by the record.
// Before, down without cgroups dropped the records and left the processes.
func TestDownStopsProcessesOfANamespaceDeletedByHand(t *testing.T) {
	tracking(t, func(t *testing.T, sb *sandbox, d *Driver) {
		up(t, d, harness.DesiredFromText(t, processLab))
		if labProcesses(t, "procs")["sleep 1000"] == 0 {
			t.Fatal("sleep 1000 does not run after up")
		}
		path := sb.nsPath("web")
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		os.Remove(path)
		down(t, d, "procs")
		if pid := labProcesses(t, "procs")["sleep 1000"]; pid != 0 {
			t.Errorf("sleep 1000 (pid %d), of the namespace deleted by hand, still runs after down", pid)
		}
	})
}

// Processes that keep entering a namespace as fast as they are stopped (a
// watchdog of someone's) fail its deletion, naming them: deleted with one
// inside, the namespace would live on, nameless, and down say it was done.
func TestProcessesThatKeepEnteringANamespaceFailItsDeletion(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, starOf("enter", 1).s)
	loop := exec.Command("sh", "-c", "while :; do nsenter --net="+sb.nsPath("c0")+" sleep 1060 & sleep 0.005; done")
	loop.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Kill(-loop.Process.Pid, unix.SIGKILL); loop.Wait() })
	time.Sleep(300 * time.Millisecond)
	ctx := context.Background()
	plan, err := r.MakePlan(ctx, d, r.NewState("enter"))
	if err != nil {
		t.Fatal(err)
	}
	err = r.ApplyWith(ctx, d, plan, r.ApplyOptions{KeepGoing: true})
	if err == nil || !strings.Contains(err.Error(), "processes are still inside") {
		t.Fatalf("down with processes entering c0 all the time: %v", err)
	}
}

// A command whose first process exits as its server starts (`./server &`) has
// not ended while the server runs: with cgroups, in the entry's cgroup;
// without, in the process group netlab started it in. up waits for the server
// and down stops it, in both modes. Before, without cgroups, up failed ("exited
// before it was ready") and stopped the server.
func TestAServerThatForksAwayIsWaitedFor(t *testing.T) {
	tracking(t, func(t *testing.T, sb *sandbox, d *Driver) {
		desired := harness.DesiredFromText(t, `name: fork
namespaces:
  web:
    run:
      - {cmd: "(sleep 0.3; exec python3 -m http.server 8123 --bind 127.0.0.1) & exit 0", ready: {tcp: 8123}, timeout: 10s}
`)
		up(t, d, desired)
		if got := planLines(t, d, desired); len(got) != 0 {
			t.Errorf("plan after up: %v", got)
		}
		down(t, d, "fork")
		if pid := labProcesses(t, "fork")["(sleep 0.3; exec python3 -m http.server 8123 --bind 127.0.0.1) & exit 0"]; pid != 0 {
			t.Errorf("the server (pid %d) still runs after down", pid)
		}
	})
}
