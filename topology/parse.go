package topology

// Parsing, top level: the document (size, YAML errors, aliases, depth) and the
// lab's top-level keys. Each section has its file: parse_links.go (bridges,
// links), parse_namespace.go, parse_rules.go (nat, filter), parse_process.go
// (run, exec, serve), parse_checks.go; walk.go holds the YAML helpers and
// values.go the value parsers.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile or broken file from costing more than a moment.
const (
	maxFileSize = 4 << 20   // bytes
	maxNodes    = 1_000_000 // YAML nodes visited, aliases expanded (alias bombs)
	maxDepth    = 100       // nesting of mappings and lists; a lab needs about 6
)

// Parse reads a lab file strictly: unknown keys, wrong types, duplicate keys and
// malformed values (addresses, MACs, ports, routes, publish strings) are errors.
// It reports every problem at once as Errors, sorted by position, and returns
// what it could read alongside them, so that Validate can still look for more.
// The Lab is nil only when there is no mapping to read: an empty, oversized or
// malformed file, an alias bomb, or a document that is not a mapping. Lab.Host
// is never nil.
//
// Parse checks each value on its own; how values relate to each other (links,
// gateways, duplicates across the lab) is Validate's job.
func Parse(data []byte, filename string) (*Lab, error) {
	lab, _, errs := parse(data, filename)
	if len(errs) > 0 {
		return lab, collapseRanges(errs, lab).sorted()
	}
	return lab, nil
}

// parseNotes tells Validate what Parse could not read, so that one mistake is
// reported once and not again by every check that depends on the value.
type parseNotes struct {
	badAddrs    map[string]bool // namespaces and bridges whose addresses could not all be read
	badLinks    bool            // a link could not be read: interfaces may look unlinked
	badSections map[string]bool // top-level keys whose value could not be read at all
}

func parse(data []byte, filename string) (*Lab, parseNotes, Errors) {
	d := &decoder{file: filename, notes: parseNotes{badAddrs: map[string]bool{}, badSections: map[string]bool{}}}
	if len(data) > maxFileSize {
		d.errorAt(Pos{1, 1}, "lab file is larger than 4 MiB; a lab is a few kilobytes")
		return nil, d.notes, d.errs
	}
	root := d.document(data)
	if root == nil {
		return nil, d.notes, d.errs
	}
	root = d.expandRanges(root) // h[1-100] (ranges.go)
	lab := d.lab(root)
	if lab != nil {
		lab.ranges, lab.source = d.ranges, bytes.Clone(data)
	}
	return lab, d.notes, d.errs
}

// --- The document -------------------------------------------------------------

// yamlLineRE matches the position in the yaml package's syntax errors, which give
// a line but no column.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the messages of the yaml package's parser, as opposed to
// its scanner. The parser reports the 0-based line of the construct it was in (a
// quirk of go-yaml), the scanner the 1-based line of the problem.
var yamlParserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found undefined tag handle",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// document parses data into a node tree and returns its root, or nil after
// reporting why there is nothing to walk.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		d.errorAt(Pos{1, 1}, "empty lab file: want at least `name:`")
		return nil
	} else if err != nil {
		d.yamlError(data, err)
		return nil
	}
	// A trailing "---" with nothing after it is harmless; a second document is not.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.yamlError(data, err)
		return nil
	case len(extra.Content) > 0 && !isNull(extra.Content[0]):
		d.errorAt(pos(&extra), "a second YAML document (after ---); a lab file holds one")
		return nil
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		d.errorAt(Pos{1, 1}, "empty lab file: want at least `name:`")
		return nil
	}
	root := doc.Content[0]
	if !d.checkTree(root) {
		return nil
	}
	return resolve(root)
}

// yamlError turns a syntax error of the yaml package into one positioned Error.
func (d *decoder) yamlError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0 // what the package says when it gives no line
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if slices.Contains(yamlParserProblems, msg) || line == 0 {
		line++
	}
	p := Pos{line, 1}
	// A tab in the indentation is the usual cause, and an invisible one.
	lines := bytes.Split(data, []byte("\n"))
	if line <= len(lines) {
		text := lines[line-1]
		indent := text[:len(text)-len(bytes.TrimLeft(text, " \t"))]
		if i := bytes.IndexByte(indent, '\t'); i >= 0 {
			p.Col = i + 1
			msg += " (a tab: YAML indents with spaces only)"
		}
	}
	if msg == "did not find expected key" && !strings.Contains(msg, "a tab") {
		if at, hint := indentHint(lines); hint != "" {
			p, msg = at, msg+": "+hint
		}
	}
	d.errorAt(p, "invalid YAML: %s", msg)
}

// indentHint finds the first line whose indentation lines up with no mapping
// around it (the usual cause of "did not find expected key", which the yaml
// package reports at the line of the enclosing mapping), and says so: its
// position and a hint naming the mapping it sits inside.
func indentHint(lines [][]byte) (Pos, string) {
	type level struct {
		indent int
		line   int    // the last line at this indentation
		key    string // its text, shortened
	}
	stack := []level{{indent: 0}}
	for i, raw := range lines {
		text := bytes.TrimRight(raw, " \t\r")
		body := bytes.TrimLeft(text, " ")
		if len(body) == 0 || body[0] == '#' || bytes.HasPrefix(body, []byte("---")) {
			continue
		}
		n := len(text) - len(body)
		key := string(body)
		if k, _, ok := strings.Cut(key, ":"); ok {
			key = k + ":"
		}
		if len(key) > 30 {
			key = key[:30] + "…"
		}
		top := stack[len(stack)-1]
		if n > top.indent {
			stack = append(stack, level{n, i + 1, key})
			continue
		}
		var inner level
		for len(stack) > 1 && stack[len(stack)-1].indent > n {
			inner = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
		}
		outer := stack[len(stack)-1]
		if outer.indent == n {
			stack[len(stack)-1] = level{n, i + 1, key}
			continue
		}
		spaces := func(n int) string {
			if n == 1 {
				return "1 space"
			}
			return fmt.Sprintf("%d spaces", n)
		}
		return Pos{i + 1, n + 1}, fmt.Sprintf("this line is indented by %s, between %q (line %d, %s) and its keys (%s); "+
			"the keys of one mapping line up: indent it like one or the other", spaces(n), outer.key, outer.line, spaces(outer.indent), spaces(inner.indent))
	}
	return Pos{}, ""
}

// checkTree visits every node once per path to it, aliases expanded, and refuses
// trees too big or too deep before anything else reads them. After it, the walker
// can follow aliases freely: there are no cycles and no bombs.
func (d *decoder) checkTree(root *yaml.Node) bool {
	budget := maxNodes
	onPath := map[*yaml.Node]bool{} // anchored nodes being expanded, to catch cycles
	var walk func(n *yaml.Node, depth int, outerAlias *yaml.Node) bool
	walk = func(n *yaml.Node, depth int, outerAlias *yaml.Node) bool {
		if budget--; budget < 0 {
			if outerAlias != nil {
				d.errorf(outerAlias, "alias *%s takes the file past %d YAML nodes once expanded; is this an alias bomb?", outerAlias.Value, maxNodes)
			} else {
				d.errorAt(Pos{1, 1}, "lab file has more than %d YAML nodes", maxNodes)
			}
			return false
		}
		if depth > maxDepth {
			d.errorf(n, "nested more than %d levels deep", maxDepth)
			return false
		}
		if n.Kind == yaml.AliasNode {
			if onPath[n.Alias] {
				d.errorf(n, "alias *%s is used inside its own anchor &%s", n.Value, n.Value)
				return false
			}
			if outerAlias == nil {
				outerAlias = n
			}
			onPath[n.Alias] = true
			defer delete(onPath, n.Alias)
			return walk(n.Alias, depth, outerAlias)
		}
		if n.Anchor != "" {
			onPath[n] = true
			defer delete(onPath, n)
		}
		for _, c := range n.Content {
			if !walk(c, depth+1, outerAlias) {
				return false
			}
		}
		return true
	}
	return walk(root, 1, nil)
}

// --- The sections -----------------------------------------------------------------

var topKeys = []string{"name", "description", "netns-prefix", "host", "bridges", "namespaces", "links", "checks", "docker", "networks", "containers"}

func (d *decoder) lab(root *yaml.Node) *Lab {
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "lab file: want a mapping with at least `name:`, got %s", describe(root))
		return nil
	}
	root = d.dockerLevel(root) // docker:, networks:, containers: compile to the sections below
	f, _ := d.fields(root, "lab file", topKeys...)
	lab := &Lab{File: d.file, Host: &Namespace{Pos: Pos{1, 1}, Name: HostName}}

	if n := f.val("name"); n == nil {
		d.errorAt(Pos{1, 1}, "missing name: every lab needs `name:` (%s)", labNameWant)
	} else if s, ok := d.str(n, "name"); ok {
		lab.Name, lab.NamePos = s, pos(n)
		if !labNameRE.MatchString(s) {
			d.errorf(n, "invalid lab name %q: %s", s, labNameWant)
		}
	}
	if n := f.val("description"); n != nil {
		lab.Description, _ = d.str(n, "description")
	}
	if n := f.val("netns-prefix"); n != nil {
		if s, ok := d.str(n, "netns-prefix"); ok {
			lab.NetnsPrefix = s
			if !netnsPrefixRE.MatchString(s) {
				d.errorf(n, "invalid netns-prefix %q: %s", s, netnsPrefixWant)
			}
		}
	}
	if p, ok := f["host"]; ok {
		lab.Host.Pos = pos(p.key)
		// run and serve in the host: Docker's --net=host, a container without a namespace of its own.
		d.namespace(lab.Host, p.value, "interfaces", "routes", "sysctls", "nat", "filter", "run", "serve", "exec")
	}
	if n := f.val("bridges"); n != nil {
		lab.Bridges = d.bridges(n)
	}
	if n := f.val("namespaces"); n != nil {
		lab.Namespaces = d.namespaces(n)
	}
	if n := f.val("links"); n != nil {
		lab.Links = d.links(n)
	}
	if n := f.val("checks"); n != nil {
		lab.Checks = d.checks(n)
	}
	return lab
}
