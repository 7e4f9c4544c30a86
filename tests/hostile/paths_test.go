package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// outsideState lists everything in the sandbox's /run (which holds the overlay
// of its /etc too) except netlab's state directory, with each file's content:
// what a command that may only touch /run/netlab must leave as it was.
func outsideState(sb *harness.Sandbox) string {
	sb.T.Helper()
	return sb.OK("sh", "-c", `find /run -path /run/netlab -prune -o -printf '%M %p %l\n' | sort; `+
		`find /run -path /run/netlab -prune -o -type f -size -64k -print0 | sort -z | xargs -0r md5sum`)
}

// TestLabNamesNeverBecomePathsOutsideTheStateDirectory: a lab name given on the
// command line is checked like a lab file's `name:` before anything else; a name
// such as ../../run/victim, .. or . fails, and nothing outside /run/netlab is
// created or removed (the victim directory and its files survive).
func TestLabNamesNeverBecomePathsOutsideTheStateDirectory(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("sh", "-c", "mkdir -p /run/victim/sub && echo keep > /run/victim/file && echo keep > /run/victim/sub/file && "+
		"mkdir -p /run/netlab/victim && echo keep > /run/netlab/victim/lab.json")
	before := outsideState(sb)
	for _, args := range [][]string{
		{"down", "--lab", "../../run/victim"},
		{"down", "--lab", "../victim"},
		{"down", "--lab", ".."},
		{"down", "--lab", "."},
		{"status", "../../x"},
		{"status", ".."},
		{"inspect", "../x"},
		{"inspect", "."},
		{"exec", "--lab", "../x", "web", "--", "true"},
		{"exec", "--lab", "..", "web", "--", "true"},
	} {
		res := sb.Fails(append([]string{"netlab"}, args...)...)
		if !strings.Contains(res.Stderr, "invalid lab name") {
			t.Errorf("netlab %s: want an invalid lab name error, got:\n%s%s", strings.Join(args, " "), res.Stdout, res.Stderr)
		}
		if after := outsideState(sb); after != before {
			t.Fatalf("netlab %s changed files outside /run/netlab:\nbefore:\n%s\nafter:\n%s", strings.Join(args, " "), before, after)
		}
	}
	if got := sb.OK("cat", "/run/netlab/victim/lab.json"); got != "keep\n" {
		t.Errorf("the state of another lab changed: %q", got)
	}
}

// TestDownLabGivenAFileSaysHowToCallIt: `down --lab labs/x.yaml` is a path given
// where a lab name goes; netlab says which command was meant.
func TestDownLabGivenAFileSaysHowToCallIt(t *testing.T) {
	sb := harness.NewSandbox(t)
	for _, v := range []string{"labs/x.yaml", "x.yml", "x.yaml"} {
		res := sb.Fails("netlab", "down", "--lab", v)
		want := `--lab takes a lab name; did you mean "netlab down ` + v + `"?`
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("down --lab %s: want %q, got:\n%s", v, want, res.Stderr)
		}
	}
	if got := sb.OK("sh", "-c", "ls -A /run/netlab 2>/dev/null; true"); got != "" {
		t.Errorf("down --lab with a file name left state behind: %q", got)
	}
}

// TestStateDirectoryListsOnlyValidLabs: a directory with a name no lab can have,
// or a symlink, in /run/netlab is not a lab: status neither lists nor follows it.
func TestStateDirectoryListsOnlyValidLabs(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("sh", "-c", "mkdir -p /run/netlab/Bad.Name /run/elsewhere && echo '{\"name\":\"x\",\"file\":\"/etc/passwd\"}' > /run/elsewhere/lab.json && "+
		"ln -s /run/elsewhere /run/netlab/linked")
	out := sb.OK("netlab", "status")
	if strings.Contains(out, "Bad.Name") || strings.Contains(out, "linked") || strings.Contains(out, "passwd") {
		t.Errorf("status lists entries that are not labs:\n%s", out)
	}
}
