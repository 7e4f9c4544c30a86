package hostile

import (
	"regexp"
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
	listener := sb.Command("python3", "-m", "http.server", "8080", "--bind", "127.0.0.1")
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	// Stopped with the sandbox (its PID namespace); reap nsenter.
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out := sb.OK("ss", "-Hltn", "sport = :8080"); out != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("python3 -m http.server 8080 did not listen")
		}
	}
	lab := writeLab(t, "inuse.yaml", `name: inuse
host:
  serve: [{http: 8080}]
`)
	res := sb.Fails("netlab", "up", lab)
	if !regexp.MustCompile(`serve host:8080: port 8080 is in use by pid \d+ \(python3[^)]*\)`).MatchString(res.Stderr) {
		t.Errorf("up's error does not name the port's owner:\n%s", res.Stderr)
	}
}
