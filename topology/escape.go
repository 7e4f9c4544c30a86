package topology

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Text from a lab file (a `run:` command, a description, a check URL, a body)
// is printed by plan, graph, status, inspect, test and in error messages. A
// terminal acts on some characters instead of showing them: an escape sequence
// can erase a line of a plan and write another in its place, a bidi override
// can show a command backwards. Printable is the one function every printer of
// such text goes through. The values themselves reach the kernel unchanged.

// Printable returns s with every character a terminal would act on written as a
// Go escape: C0 controls, DEL and C1 controls (\x1b, \n, \u009b), the Unicode
// bidi controls and line separators (\u202e, \u2028) and bytes that are not
// UTF-8 (\xff). The result is one line. Text without them is returned as is.
func Printable(s string) string { return escape(s, false) }

// PrintableLines is Printable for text of several lines: newlines and tabs
// are kept, everything else Printable escapes is escaped.
func PrintableLines(s string) string { return escape(s, true) }

// Unprintable reports whether r is a character Printable escapes.
func Unprintable(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true // bidi marks, embeddings, overrides and isolates
	case r == 0x2028, r == 0x2029:
		return true // line and paragraph separators
	}
	return r == utf8.RuneError
}

func escape(s string, lines bool) string {
	keep := func(r rune) bool { return lines && (r == '\n' || r == '\t') }
	clean := true
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (Unprintable(r) && !keep(r)) || (r == utf8.RuneError && size == 1) {
			clean = false
			break
		}
		i += size
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keep(r) || !Unprintable(r):
			b.WriteString(s[i : i+size])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// EncodeYAML writes a node tree as a lab file is written (two-space indents),
// with every character Printable escapes written as a YAML escape: the
// encoder escapes C0 and C1 controls itself, but prints bidi controls and line
// separators raw, so `validate -o yaml`, `expand` and `import` could show a
// `run:` command backwards. A scalar holding one is written double-quoted,
// where YAML reads "\u202e" back as the character: the file means the same.
func EncodeYAML(root *yaml.Node) ([]byte, error) {
	quoteUnprintable(root)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	// What is left raw is inside those double quotes, or in a comment, where
	// PrintableLines's escapes (\u202e) are YAML's too.
	return []byte(PrintableLines(buf.String())), nil
}

// quoteUnprintable makes every scalar of a tree that holds a character
// Printable escapes (other than a newline or a tab) double-quoted.
func quoteUnprintable(n *yaml.Node) {
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && strings.ContainsFunc(n.Value, func(r rune) bool { return r != '\n' && r != '\t' && Unprintable(r) }) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quoteUnprintable(c)
	}
	quoteUnprintable(n.Alias)
}
