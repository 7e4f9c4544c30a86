package topology_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netlab/topology"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode ├──":  "plain text, ünïcode ├──",
		"\x1b[2K\x1b[1A":           `\x1b[2K\x1b[1A`,
		"a\nb\tc\rd\x00\x7f":       `a\nb\tc\rd\x00\x7f`,
		"csi \u009b1A, nel \u0085": `csi \u009b1A, nel \u0085`,
		"evil\u202eexe.txt\u2066":  `evil\u202eexe.txt\u2066`,
		"bad \xff byte":            `bad \xff byte`,
		"line\u2028separator":      `line\u2028separator`,
	} {
		if got := topology.Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
	if got := topology.PrintableLines("a\n\tb\x1bc"); got != "a\n\tb\\x1bc" {
		t.Errorf("PrintableLines kept %q", got)
	}
}

// A lab whose description, interface name and check URL carry terminal control
// sequences: graph in every format, and validate's errors, print none raw.
const hostileText = `name: esc
description: "spoof\e[2K\e[1Aline"
bridges:
  br0: {addresses: [10.0.0.1/24]}
namespaces:
  "web":
    interfaces: {"eth\u202e0": {addresses: [10.0.0.2/24]}}
links:
  - ["web:eth\u202e0", br0]
`

func TestGraphEscapesControlCharacters(t *testing.T) {
	lab, err := topology.Parse([]byte(hostileText), "esc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, f := range topology.GraphFormats {
		out, err := lab.Graph(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(out, "\x1b\u202e") {
			t.Errorf("graph -f %s carries a raw control character:\n%q", f, out)
		}
		if !strings.Contains(out, `eth\u202e0`) {
			t.Errorf("graph -f %s does not show the escaped name:\n%s", f, out)
		}
	}
}

func TestErrorsEscapeControlCharacters(t *testing.T) {
	file := filepath.Join(t.TempDir(), "esc.yaml")
	text := hostileText + "checks:\n  - {from: web, http: \"http://10.0.0.1/\\e[2K\\e[1A\\u202e\"}\n  - {from: \"nowhere\\e[2K\", ping: 10.0.0.1}\n" +
		"  - {from: web, http: \"http://\\e[2K\\e[1A\"}\n"
	os.WriteFile(file, []byte(text), 0o644)
	_, err := topology.Load(file)
	if err == nil {
		t.Fatal("want errors")
	}
	if strings.ContainsAny(err.Error(), "\x1b\u202e") {
		t.Errorf("errors carry a raw control character:\n%q", err.Error())
	}
}

// The lab as YAML (validate -o yaml, expand) shows a bidi override or a line
// separator escaped, in double quotes where YAML reads the escape back as the
// character: the printed lab means the same as the file.
func TestLabsAsYAMLEscapeBidiControls(t *testing.T) {
	const lab = "name: bidi\nnamespaces:\n  web:\n    run: [\"echo \\u202eexe.txt\\u2028x\"]\n"
	parsed, err := topology.Parse([]byte(lab), "bidi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	expandedYAML, err := parsed.ExpandedYAML()
	if err != nil {
		t.Fatal(err)
	}
	expanded, err := topology.Expand([]byte(lab), "bidi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{"validate -o yaml": expandedYAML, "expand": expanded} {
		if strings.ContainsAny(string(out), "\u202e\u2028") || !strings.Contains(string(out), `"echo \u202eexe.txt\`) {
			t.Errorf("%s prints the controls raw, or not quoted:\n%s", name, out)
		}
		again, err := topology.Parse(out, "again.yaml")
		if err != nil {
			t.Fatalf("%s: the printed lab does not parse: %v\n%s", name, err, out)
		}
		if got := again.Namespaces[0].Run[0].Line; got != "echo \u202eexe.txt\u2028x" {
			t.Errorf("%s: the printed lab's command reads back as %q", name, got)
		}
	}
}
