package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func shippedLabs(t *testing.T) []string {
	t.Helper()
	labs, err := filepath.Glob("../labs/*.yaml")
	if err != nil || len(labs) == 0 {
		t.Fatalf("no labs found under ../labs: %v", err)
	}
	return labs
}

// TestShippedLabs: every lab under labs/ comes up, a second up changes nothing,
// and down leaves the sandbox as it found it.
func TestShippedLabs(t *testing.T) {
	for _, lab := range shippedLabs(t) {
		t.Run(filepath.Base(lab), func(t *testing.T) {
			sb := newSandbox(t)
			before := sb.kernelState()
			sb.ok("netlab", "up", lab)
			if got := sb.ok("netlab", "up", lab); got != "No changes.\n" {
				t.Errorf("second up: %q", got)
			}
			if res := sb.exec("netlab", "test", lab); res.code != 0 || !strings.Contains(res.stdout, " passed, 0 failed") {
				t.Errorf("netlab test %s: exit %d\n%s%s", lab, res.code, res.stdout, res.stderr)
			}
			sb.ok("netlab", "down", lab)
			if after := sb.kernelState(); after != before {
				t.Errorf("down left a trace:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestPlanCommandsReproduceTheLab: the script `plan -o commands` prints, run by
// hand in a fresh sandbox, builds a state netlab then finds nothing to change in.
func TestPlanCommandsReproduceTheLab(t *testing.T) {
	for _, lab := range append(shippedLabs(t), spine) {
		t.Run(filepath.Base(lab), func(t *testing.T) {
			sb := newSandbox(t)
			script := filepath.Join(t.TempDir(), "plan.sh")
			if err := os.WriteFile(script, []byte(sb.ok("netlab", "plan", "-o", "commands", lab)), 0o644); err != nil {
				t.Fatal(err)
			}
			if res := sb.exec("sh", "-x", script); res.code != 0 {
				t.Fatalf("the plan's script failed: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			if got := sb.ok("netlab", "plan", lab); got != "No changes.\n" {
				t.Errorf("after running the plan's commands by hand, plan still wants:\n%s", got)
			}
			if got := sb.ok("netlab", "down", lab); !strings.Contains(got, "- netns") {
				t.Errorf("down after the script did not see the namespaces as the lab's:\n%s", got)
			}
		})
	}
}
