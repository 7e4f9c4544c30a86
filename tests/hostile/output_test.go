package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// terminalControls are what a lab file must never get to a terminal raw: ESC
// (erase a line, move up, rewrite it), CSI as a C1 character, a carriage return
// and a bidi override.
const terminalControls = "\x1b\u009b\r\u202e"

// spoofLab tries to rewrite its own plan on the terminal: its `run:` command,
// served body, description and a check URL carry escape sequences and a bidi
// override.
const spoofLab = `name: spoof
description: "innocent\e[2K\e[1A"
namespaces:
  web:
    interfaces: {eth0: {addresses: [10.9.0.2/24]}}
    run: ["sleep 1000 #\e[2K\e[1A\u009b1A\u202e"]
    serve: [{http: 80, body: "ok\e[2K"}]
  c2:
    interfaces: {eth0: {addresses: [10.9.0.3/24]}}
links:
  - [web:eth0, c2:eth0]
checks:
  - {from: c2, http: "http://10.9.0.2:80/\u202efdp.exe", expect: {body: "nope"}}
`

// TestOutputEscapesControlCharacters: every command that prints text from the
// lab file (plan in each format, graph in each format, up, status, inspect,
// test, validate's errors, down) escapes what a terminal would act on.
func TestOutputEscapesControlCharacters(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "spoof.yaml", spoofLab)
	check := func(what string, res harness.Result) {
		t.Helper()
		for _, out := range []string{res.Stdout, res.Stderr} {
			if i := strings.IndexAny(out, terminalControls); i >= 0 {
				t.Errorf("%s prints a raw control character at byte %d:\n%q", what, i, out)
			}
		}
	}
	for _, o := range []string{"text", "json", "commands"} {
		res := sb.Exec("netlab", "plan", lab, "-o", o)
		check("plan -o "+o, res)
		if o == "text" && !strings.Contains(res.Stdout, `#\x1b[2K\x1b[1A\u009b1A\u202e`) {
			t.Errorf("plan does not show the command escaped:\n%s", res.Stdout)
		}
	}
	for _, f := range []string{"ascii", "mermaid", "dot"} {
		check("graph -f "+f, sb.Exec("netlab", "graph", lab, "-f", f))
	}
	check("up", sb.Exec("netlab", "up", lab))
	check("status", sb.Exec("netlab", "status"))
	check("inspect", sb.Exec("netlab", "inspect", "spoof"))
	res := sb.Exec("netlab", "test", lab)
	check("test", res)
	if !strings.Contains(res.Stdout, `\u202efdp.exe`) {
		t.Errorf("test does not show the check's URL escaped:\n%s", res.Stdout)
	}

	// The `plan -o commands` script of a hostile lab, cat'ed, is harmless, and
	// run, it starts the command exactly as written: the next plan is empty.
	sb.OK("netlab", "down", lab)
	script := sb.OK("netlab", "plan", lab, "-o", "commands")
	cmd := sb.Command("sh", "-e")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the commands script fails: %v\n%s\n%s", err, out, script)
	}
	if out := sb.SettledPlan(lab); !strings.Contains(out, "No changes.") {
		t.Errorf("after the commands script, plan is not empty:\n%s", out)
	}
	check("down", sb.Exec("netlab", "down", lab))

	bad := writeLab(t, "bad.yaml", strings.Replace(spoofLab, `\u202efdp.exe`, `\e[2K\e[1A`, 1)+
		"  - {from: \"c9\\e[2K\", ping: 10.9.0.2}\n")
	res = sb.Fails("netlab", "validate", bad)
	check("validate", res)
	if !strings.Contains(res.Stderr, `\x1b[2K`) {
		t.Errorf("validate does not show the bad URL escaped:\n%s", res.Stderr)
	}
}
