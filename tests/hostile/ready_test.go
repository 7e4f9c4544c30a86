package hostile

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"netlab/tests/harness"
)

// readyLab: web runs a server that needs two seconds before it listens.
const readyLab = `name: ready
namespaces:
  web:
    run:
      - {cmd: "sleep 2; exec netlab serve --http 8000 --body slow", ready: {tcp: 8000}}
      - {cmd: "sleep 1; touch /run/web.ready; exec sleep 1000", ready: {file: /run/web.ready}, timeout: 5s}
checks:
  - {from: web, http: "http://127.0.0.1:8000/", expect: {body: slow}}
`

// TestUpWaitsUntilReady: up returns only once a run: process with ready: is
// ready (its port listens, its file exists), so a test right after it passes.
func TestUpWaitsUntilReady(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "ready.yaml", readyLab)
	start := time.Now()
	sb.OK("netlab", "up", lab)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("up returned after %s, before the server could listen (it sleeps 2 s)", took)
	}
	if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
		t.Fatalf("netlab test right after up: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("plan after up:\n%s", got)
	}
}

// TestNeverReadyFailsWithinItsTimeout: a process that never gets ready fails up
// within its timeout, naming it and showing the last lines of its log; netlab
// stops it, so the next plan starts it again rather than taking it for running.
func TestNeverReadyFailsWithinItsTimeout(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "never.yaml", `name: never
namespaces:
  web:
    run:
      - {cmd: "echo starting without a port; exec sleep 1000", ready: {tcp: 8001}, timeout: 2s}
`)
	start := time.Now()
	res := sb.Fails("netlab", "up", lab)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("up took %s to fail with a timeout of 2s", took)
	}
	for _, want := range []string{`"echo starting without a port; exec sleep 1000" is not ready after 2s`, "nothing listens on tcp port 8001", "starting without a port"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("up's error lacks %q:\n%s", want, res.Stderr)
		}
	}
	if got := sb.OK("netlab", "plan", lab); !strings.Contains(got, "+ process web: echo starting without a port") {
		t.Errorf("the process that never got ready is still taken for running:\n%s", got)
	}
}

// TestExitBeforeReadyShowsItsLog: a process that exits at once fails up with
// how it ended and its last log lines.
func TestExitBeforeReadyShowsItsLog(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "exits.yaml", `name: exits
namespaces:
  web:
    run:
      - {cmd: "echo line one; echo no config file >&2; exit 3", ready: {tcp: 8002}}
`)
	res := sb.Fails("netlab", "up", lab)
	for _, want := range []string{`"echo line one; echo no config file >&2; exit 3"`, "exit status 3", "    line one\n    no config file"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("up's error lacks %q:\n%s", want, res.Stderr)
		}
	}
}

// TestServedPortInUseNamesItsOwner: a port a lab serves that another process
// already listens on fails up, naming that process (it used to report the lab
// converged while its server died with "address already in use").
func TestServedPortInUseNamesItsOwner(t *testing.T) {
	sb := harness.NewSandbox(t)
	holdPort(t, sb, 8080)
	lab := writeLab(t, "inuse.yaml", `name: inuse
host:
  serve: [{http: 8080}]
`)
	res := sb.Fails("netlab", "up", lab)
	if !regexp.MustCompile(`serve host:8080: tcp port 8080 is in use by pid \d+ \(python3[^)]*\)`).MatchString(res.Stderr) {
		t.Errorf("up's error does not name the port's owner:\n%s", res.Stderr)
	}
}

// TestAFailedStartLeavesNothingRunning: what a process that never got ready,
// or ended at once, left behind (here a daemon that forked into a session of
// its own) is stopped with it; before, it stayed in the entry's cgroup and the
// next up took the entry for running and waited for nothing.
func TestAFailedStartLeavesNothingRunning(t *testing.T) {
	sb := harness.NewSandbox(t)
	for _, c := range []struct{ name, cmd string }{
		{"never", "setsid -f sleep 1031; exec sleep 1000"},
		{"exits", "setsid -f sleep 1032; exit 3"},
	} {
		lab := writeLab(t, c.name+".yaml", "name: "+c.name+`
namespaces:
  web:
    run:
      - {cmd: "`+c.cmd+`", ready: {tcp: 8003}, timeout: 1s}
`)
		sb.Fails("netlab", "up", lab)
		if out := sb.Exec("pgrep", "-f", "^sleep 103[12]$"); out.Code == 0 {
			t.Errorf("%s: the daemon it forked still runs after the failed up: pid %s", c.name, out.Stdout)
		}
		if got := sb.OK("netlab", "plan", lab); !strings.Contains(got, "+ process web: "+c.cmd) {
			t.Errorf("%s: the entry is taken for running after its start failed:\n%s", c.name, got)
		}
		sb.OK("netlab", "down", lab)
	}
}

// TestHTTPReadinessOnATakenPortFails: a ready: {http: URL} whose port already
// answers in the namespace fails up, naming the owner; before, the other
// server's answer made the process look ready. So does the URL python3 -m
// http.server prints, with 0.0.0.0, which Linux connects to the namespace
// itself (before, it skipped the port's check).
func TestHTTPReadinessOnATakenPortFails(t *testing.T) {
	sb := harness.NewSandbox(t)
	holdPort(t, sb, 8091)
	for _, host := range []string{"localhost", "0.0.0.0"} {
		lab := writeLab(t, "httpinuse.yaml", `name: httpinuse
host:
  run:
    - {cmd: "exec python3 -m http.server 8091 --bind 127.0.0.1", ready: {http: "http://`+host+`:8091/"}}
`)
		res := sb.Fails("netlab", "up", lab)
		if !regexp.MustCompile(`tcp port 8091 is in use by pid \d+ \(python3[^)]*\)`).MatchString(res.Stderr) {
			t.Errorf("ready at %s: up's error does not name the port's owner:\n%s", host, res.Stderr)
		}
	}
}

// TestAFileFromBeforeIsNotReadiness: a ready: file left by an earlier run
// proves nothing; the process must write it anew, and then it is ready.
func TestAFileFromBeforeIsNotReadiness(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("sh", "-c", "echo old >/run/stale.ready; echo old >/run/fresh.ready")
	res := sb.Fails("netlab", "up", writeLab(t, "stale.yaml", `name: stale
namespaces:
  web:
    run:
      - {cmd: "exec sleep 1000", ready: {file: /run/stale.ready}, timeout: 1s}
`))
	if !strings.Contains(res.Stderr, "/run/stale.ready is still the file that was there before the process started") {
		t.Errorf("up with a ready file left from before:\n%s", res.Stderr)
	}
	sb.OK("netlab", "down", "--lab", "stale")
	sb.OK("netlab", "up", writeLab(t, "fresh.yaml", `name: fresh
namespaces:
  web:
    run:
      - {cmd: "sleep 0.5; echo new >/run/fresh.ready; exec sleep 1000", ready: {file: /run/fresh.ready}, timeout: 5s}
`))
}

// TestInterruptedWaitStopsTheProcess: Ctrl-C while up waits for a process to be
// ready ends up at once and stops the process, which the next plan starts
// again; before, up kept waiting for the whole timeout.
func TestInterruptedWaitStopsTheProcess(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "slow.yaml", `name: slow
namespaces:
  web:
    run:
      - {cmd: "exec sleep 1033", ready: {tcp: 8004}, timeout: 60s}
`)
	out := sb.OK("sh", "-c", `netlab up `+lab+` >/dev/null 2>/run/err & p=$!
sleep 1.5; kill -INT $p; start=$(date +%s%N); wait $p; code=$?; end=$(date +%s%N)
echo "code=$code ms=$(( (end - start) / 1000000 ))"; cat /run/err`)
	var code, ms int
	if _, err := fmt.Sscanf(out, "code=%d ms=%d", &code, &ms); err != nil || code == 0 || ms > 5000 {
		t.Errorf("SIGINT while up waits for readiness: want a failure within 5 s, got:\n%s", out)
	}
	if res := sb.Exec("pgrep", "-f", "^sleep 1033$"); res.Code == 0 {
		t.Errorf("the process up was waiting for still runs: pid %s", res.Stdout)
	}
	if got := sb.OK("netlab", "plan", lab); !strings.Contains(got, "+ process web: exec sleep 1033") {
		t.Errorf("the interrupted entry is taken for running:\n%s", got)
	}
}

// TestKilledWaitLeavesTheProcessToStartAgain: an up killed outright (SIGKILL:
// the OOM killer, a CI timeout) while it waits for readiness cannot stop the
// process; the next up must not take it for ready. Before, the next plan said
// "No changes." with nothing listening.
func TestKilledWaitLeavesTheProcessToStartAgain(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "killed.yaml", `name: killed
namespaces:
  web:
    run:
      - {cmd: "exec sleep 1034", ready: {tcp: 8005}, timeout: 60s}
`)
	sb.OK("sh", "-c", `netlab up `+lab+` >/dev/null 2>&1 & p=$!
for i in $(seq 100); do pgrep -x sleep >/dev/null && break; sleep 0.05; done
sleep 0.3; kill -KILL $p; wait $p; true`)
	if res := sb.Exec("pgrep", "-f", "^sleep 1034$"); res.Code != 0 {
		t.Fatalf("the process the killed up waited for does not run: the test proves nothing")
	}
	if got := sb.OK("netlab", "plan", lab); !strings.Contains(got, "+ process web: exec sleep 1034") {
		t.Errorf("the entry a killed up never saw ready is taken for running:\n%s", got)
	}
}

// TestAServerThatDaemonizesIsReady: a command whose first process exits as its
// server starts (a daemon, `./server &`) has not ended while what it forked
// runs in its cgroup: up waits for the server, and down stops it. Before, up
// failed with "ended at once (exit status 0)" and stopped the server.
func TestAServerThatDaemonizesIsReady(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "daemon.yaml", `name: daemon
namespaces:
  web:
    run:
      - {cmd: "(sleep 0.5; exec netlab serve --http 8006 --body forked) & exit 0", ready: {tcp: 8006}}
checks:
  - {from: web, http: "http://127.0.0.1:8006/", expect: {body: forked}}
`)
	sb.OK("netlab", "up", lab)
	if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
		t.Fatalf("netlab test after up: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("plan after up:\n%s", got)
	}
	sb.OK("netlab", "down", lab)
	if res := sb.Exec("pgrep", "-f", "serve --http 8006"); res.Code == 0 {
		t.Errorf("the forked server still runs after down: pid %s", res.Stdout)
	}
}

// TestProcessesWaitingForALaterOneDoNotBlockIt: more processes than netlab
// has workers wait for something a process that sorts after them provides
// (proxies waiting for their backend). Before, the waits filled every worker,
// the provider never started, and up failed when they timed out. The open-file
// limit of 128 makes netlab use four workers on any machine.
func TestProcessesWaitingForALaterOneDoNotBlockIt(t *testing.T) {
	sb := harness.NewSandbox(t)
	var b strings.Builder
	b.WriteString("name: waits\nnamespaces:\n")
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(&b, "  a%d:\n    run: [{cmd: \"exec sleep 104%d\", ready: {file: /run/go-a%d}, timeout: 10s}]\n", i, i, i)
	}
	b.WriteString("  z:\n    run: [\"sleep 1; touch /run/go-a1 /run/go-a2 /run/go-a3 /run/go-a4 /run/go-a5; exec sleep 1049\"]\n")
	lab := writeLab(t, "waits.yaml", b.String())
	if res := sb.Exec("sh", "-c", "ulimit -n 128 && exec netlab up "+lab); res.Code != 0 {
		t.Fatalf("up of five processes waiting for a sixth: exit %d\n%s", res.Code, res.Stderr)
	}
}

// holdPort starts a server that is not the lab's on 127.0.0.1:port in the
// sandbox's host namespace, and waits until it listens.
func holdPort(t *testing.T, sb *harness.Sandbox, port int) {
	t.Helper()
	p := strconv.Itoa(port)
	listener := sb.Command("python3", "-m", "http.server", p, "--bind", "127.0.0.1")
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	// Stopped with the sandbox (its PID namespace); reap nsenter.
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	for deadline := time.Now().Add(10 * time.Second); sb.OK("ss", "-Hltn", "sport = :"+p) == ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("python3 -m http.server %s did not listen", p)
		}
	}
}

// TestHTTPReadinessThroughAnotherProcessOfTheLab: an http URL another process of
// the same lab serves (a proxy in front of the one starting) is what the check
// asks, not a port taken.
func TestHTTPReadinessThroughAnotherProcessOfTheLab(t *testing.T) {
	sb := harness.NewSandbox(t)
	front := `name: front
host:
  run:
    - {cmd: "exec python3 -m http.server 8095 --bind 127.0.0.1", ready: {tcp: 8095}}
`
	sb.OK("netlab", "up", writeLab(t, "front.yaml", front))
	sb.OK("netlab", "up", writeLab(t, "front.yaml", front+`    - {cmd: "exec sleep 1045", ready: {http: "http://127.0.0.1:8095/"}}
`))
	sb.OK("netlab", "down", "--lab", "front")
}
