package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestLabIsManagedFromItsOwnNamespace: a netlab run from inside one of the
// lab's namespaces (netlab exec c2 -- netlab down) would take c2 for the host:
// it refuses, changes nothing, and the lab stays intact; from the namespace
// the lab was brought up from, down works.
func TestLabIsManagedFromItsOwnNamespace(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := "../../labs/docker-bridge-lowlevel.yaml"
	sb.OK("netlab", "up", lab)
	before := kernelState(sb)
	for _, args := range [][]string{
		{"netlab", "down", "--lab", "docker-bridge"},
		{"netlab", "down", lab},
		{"netlab", "up", lab},
		{"netlab", "plan", lab},
		{"netlab", "test", lab},
		{"netlab", "inspect", "docker-bridge"},
	} {
		res := sb.Fails(append([]string{"netlab", "exec", "c2", "--"}, args...)...)
		if !strings.Contains(res.Stderr, "lab docker-bridge was brought up from network namespace net:[") ||
			!strings.Contains(res.Stderr, "; this netlab runs in net:[") || !strings.Contains(res.Stderr, "; run it from there") {
			t.Errorf("%s inside c2: exit %d\n%s%s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
		}
	}
	// status reports the lab without taking c2 for its host side.
	if out := sb.OK("netlab", "exec", "c2", "--", "netlab", "status"); !strings.Contains(out, "docker-bridge: drift unknown: lab docker-bridge was brought up from network namespace net:[") {
		t.Errorf("status inside c2:\n%s", out)
	}
	if after := kernelState(sb); after != before {
		t.Errorf("runs from inside c2 changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("the lab after the refused runs:\n%s", got)
	}
	sb.OK("netlab", "down", lab)
	if got := sb.OK("ip", "netns", "list"); got != "" {
		t.Errorf("namespaces after down: %q", got)
	}
}

// TestStatusOfALabWhoseFileNowNamesAnother: status plans a lab from the file
// it was brought up from; once that file names another lab, that plan would
// be the other lab's, shown as this one's drift.
func TestStatusOfALabWhoseFileNowNamesAnother(t *testing.T) {
	sb := harness.NewSandbox(t)
	path := writeLab(t, "renamed.yaml", "name: first\nnamespaces:\n  a: {}\n")
	sb.OK("netlab", "up", path)
	rewriteLab(t, path, "name: second\nnamespaces:\n  a: {}\n")
	out := sb.OK("netlab", "status", "first")
	if want := "first: drift unknown: its file " + path + " now names lab second"; !strings.Contains(out, want) || strings.Contains(out, "+ netns") {
		t.Errorf("status of the renamed lab lacks %q (and must plan nothing):\n%s", want, out)
	}
	sb.OK("netlab", "down", "--lab", "first")
}

// TestStatusShowsTheLabsItCanReadWhenOneItCannot: a lab whose state cannot be
// read (here a link where its exec records go, refused as not netlab's own)
// fails status with its name, after the rows of the labs it could read.
func TestStatusShowsTheLabsItCanReadWhenOneItCannot(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", writeLab(t, "good.yaml", "name: good\nnamespaces:\n  g: {}\n"))
	sb.OK("netlab", "up", writeLab(t, "bad.yaml", "name: bad\nnamespaces:\n  b: {}\n"))
	sb.OK("ln", "-s", "/tmp", "/run/netlab/bad/exec")
	for _, command := range []string{"status", "inspect"} {
		res := sb.Fails("netlab", command)
		if !strings.Contains(res.Stdout, "good") || !strings.Contains(res.Stderr, "lab bad: ") {
			t.Errorf("%s with one lab unreadable: exit %d\n%s%s", command, res.Code, res.Stdout, res.Stderr)
		}
	}
	sb.OK("rm", "/run/netlab/bad/exec")
	sb.OK("netlab", "down", "--lab", "bad")
	sb.OK("netlab", "down", "--lab", "good")
}
