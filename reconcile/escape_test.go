package reconcile_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
	"netlab/tests/harness"
)

// hostileLab puts terminal control sequences (erase the line, move up; a
// carriage return; a bidi override) in every text of a lab file that reaches a
// plan: a `run:` command, a served body, a sysctl value.
const hostileLab = `name: esc
description: "spoof\e[2K\e[1A"
namespaces:
  web:
    sysctls: {net.ipv4.ping_group_range: "0\e[2K\t2147483647"}
    run: ["sleep 1000 # \e[2K\e[1A+ netns fine\u202e"]
    serve: [{http: 80, body: "hi\e[2K"}]
`

// TestPlanEscapesControlCharacters: no output format of a plan carries a raw
// control character from the lab file, and the escaped text still shows it.
func TestPlanEscapesControlCharacters(t *testing.T) {
	desired := harness.DesiredFromText(t, hostileLab)
	plan, err := r.MakePlan(context.Background(), fake.New(), desired)
	if err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func(*bytes.Buffer) error{
		"text":     func(b *bytes.Buffer) error { return plan.WriteText(b) },
		"json":     func(b *bytes.Buffer) error { return plan.WriteJSON(b) },
		"commands": func(b *bytes.Buffer) error { return plan.WriteCommands(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if i := strings.IndexAny(out, "\x1b\r\u202e"); i >= 0 {
			t.Errorf("-o %s carries a raw control character at byte %d:\n%q", name, i, out)
		}
		if name == "text" && !strings.Contains(out, `sleep 1000 # \x1b[2K\x1b[1A+ netns fine\u202e`) {
			t.Errorf("-o text does not show the escaped command:\n%s", out)
		}
	}
}

// TestCommandsScriptKeepsValuesExact: the quoting that keeps control characters
// out of a `plan -o commands` script still gives the shell the exact value.
func TestCommandsScriptKeepsValuesExact(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	values := []string{"", "plain", "it's", "a\x1b[2Kb", "\x1b", "tab\there", "line\nbreak", "\r'\u202e'\x7f\u009b", "x\xffy"}
	for _, v := range values {
		desired := r.NewState("q")
		desired.Processes[r.ProcKey{NS: "n", Command: v}] = &r.Process{ProcKey: r.ProcKey{NS: "n", Command: v}}
		// The value as StartProcess quotes it for netlab __start ... sh -c COMMAND.
		cmds := r.StartProcess{Lab: "q", Process: *desired.Processes[r.ProcKey{NS: "n", Command: v}]}.Commands()
		line := cmds[0]
		start := strings.Index(line, " -- sh -c ") + len(" -- sh -c ")
		end := strings.Index(line, "  # as up does")
		quoted := line[start:end]
		if strings.ContainsAny(quoted, "\x1b\r\u202e\x7f\u009b\xff") {
			t.Errorf("%q quoted as %q: a raw control character", v, quoted)
		}
		script := filepath.Join(t.TempDir(), "s.sh")
		os.WriteFile(script, []byte("printf '%s' "+quoted+"\n"), 0o644)
		got, err := exec.Command(sh, script).Output()
		if err != nil {
			t.Fatalf("%q quoted as %q: %v", v, quoted, err)
		}
		if string(got) != v {
			t.Errorf("%q quoted as %q: the shell reads %q", v, quoted, got)
		}
	}
}

// TestSysctlValuesPrintNormalised: the kernel separates the fields of some
// sysctls with a tab; a plan shows them as it compares them, one space apart.
func TestSysctlValuesPrintNormalised(t *testing.T) {
	k := r.SysctlKey{NS: "web", Path: "net/ipv4/ping_group_range"}
	for a, want := range map[r.Action]string{
		r.SetSysctl{SysctlKey: k, Value: "1 2", Old: "0\t2147483647"}:                 "~ sysctl  web: net.ipv4.ping_group_range 0 2147483647 -> 1 2",
		r.SetSysctl{SysctlKey: k, Value: "1\t2", Old: "0\t2147483647", Restore: true}: "- sysctl  web: net.ipv4.ping_group_range 0 2147483647 -> 1 2 (restored)",
	} {
		if got := r.Line(a); got != want {
			t.Errorf("Line = %q, want %q", got, want)
		}
	}
}
