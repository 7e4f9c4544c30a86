package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

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
		lab.ranges, lab.expanded = d.ranges, root
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

var topKeys = []string{"name", "description", "netns-prefix", "host", "bridges", "namespaces", "links", "checks"}

func (d *decoder) lab(root *yaml.Node) *Lab {
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "lab file: want a mapping with at least `name:`, got %s", describe(root))
		return nil
	}
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

func (d *decoder) bridges(n *yaml.Node) []*Bridge {
	ps, ok := d.mapping(n, "bridges")
	if !ok {
		d.notes.badSections["bridges"] = true
	}
	var out []*Bridge
	for _, p := range ps {
		b := &Bridge{Pos: pos(p.key), Name: p.key.Value, Namespace: HostName}
		out = append(out, b)
		label := "bridge " + b.Name
		if err := checkIfname(b.Name); err != nil {
			d.errorf(p.key, "bridge %q: %v", b.Name, err)
		}
		f, _ := d.fields(p.value, label, "namespace", "addresses", "mtu", "mac", "masquerade", "icc", "isolated", "resolve", "userland-proxy")
		if v := f.val("namespace"); v != nil {
			if s, ok := d.str(v, label+": namespace"); ok {
				b.Namespace = s
			}
		}
		if v := f.val("addresses"); v != nil {
			var ok bool
			if b.Addresses, ok = d.addresses(v, label); !ok {
				d.notes.badAddrs[label] = true
			}
		}
		if v := f.val("mtu"); v != nil {
			mtu, _ := d.integer(v, label+": mtu", 68, 65535)
			b.MTU = int(mtu)
		}
		if v := f.val("mac"); v != nil {
			b.MAC, _ = value(d, v, label, parseMAC)
		}
		if v := f.val("masquerade"); v != nil {
			b.Masquerade, _ = d.boolean(v, label+": masquerade")
			if b.Masquerade && len(b.Addresses) == 0 && !d.notes.badAddrs[label] {
				d.errorf(v, "%s: masquerade needs an address on the bridge (its subnet is what gets masqueraded)", label)
			}
		}
		if v := f.val("icc"); v != nil {
			if icc, ok := d.boolean(v, label+": icc"); ok {
				b.ICC = &icc
			}
		}
		if v := f.val("isolated"); v != nil {
			b.Isolated, _ = d.boolean(v, label+": isolated")
		}
		if v := f.val("resolve"); v != nil {
			b.Resolve, _ = d.boolean(v, label+": resolve")
		}
		if v := f.val("userland-proxy"); v != nil {
			b.UserlandProxy, _ = d.boolean(v, label+": userland-proxy")
		}
	}
	return out
}

func (d *decoder) namespaces(n *yaml.Node) []*Namespace {
	ps, ok := d.mapping(n, "namespaces")
	if !ok {
		d.notes.badSections["namespaces"] = true
	}
	var out []*Namespace
	for _, p := range ps {
		name := p.key.Value
		if name == HostName {
			d.errorf(p.key, "namespace %q is reserved for the namespace netlab runs in; configure it under the top-level `host:` key", name)
			continue
		}
		if !namespaceRE.MatchString(name) {
			d.errorf(p.key, "invalid namespace name %q: %s", name, namespaceWant)
		}
		ns := &Namespace{Pos: pos(p.key), Name: name}
		out = append(out, ns)
		d.namespace(ns, p.value, "interfaces", "routes", "sysctls", "nat", "filter", "publish", "run", "serve", "exec")
	}
	return out
}

// namespace reads the body of a namespace or of `host:`; known is the keys allowed.
func (d *decoder) namespace(ns *Namespace, n *yaml.Node, known ...string) {
	label := nsLabel(ns.Name)
	f, _ := d.fields(n, label, known...)
	if v := f.val("interfaces"); v != nil {
		d.interfaces(ns, v)
	}
	if v := f.val("routes"); v != nil {
		items, _ := d.list(v, label+": routes")
		for _, item := range items {
			if r := d.route(item, label); r != nil {
				ns.Routes = append(ns.Routes, r)
			}
		}
	}
	if v := f.val("sysctls"); v != nil {
		d.sysctls(ns, v)
	}
	if v := f.val("nat"); v != nil {
		items, _ := d.list(v, label+": nat")
		for _, item := range items {
			if r := d.natRule(item, label); r != nil {
				ns.NAT = append(ns.NAT, r)
			}
		}
	}
	if v := f.val("filter"); v != nil {
		items, _ := d.list(v, label+": filter")
		for _, item := range items {
			if r := d.filterRule(item, label); r != nil {
				ns.Filter = append(ns.Filter, r)
			}
		}
	}
	if v := f.val("publish"); v != nil {
		items, _ := d.list(v, label+": publish")
		for _, item := range items {
			s, ok := d.str(item, label+": publish")
			if !ok {
				continue
			}
			p, err := parsePublish(s)
			if err != nil {
				d.errorf(item, "publish %q in %s: %v", s, label, err)
				continue
			}
			p.Pos = pos(item)
			ns.Publish = append(ns.Publish, p)
		}
	}
	if v := f.val("run"); v != nil {
		items, _ := d.list(v, label+": run")
		for _, item := range items {
			c := d.runEntry(item, label)
			switch {
			case c == nil:
			case slices.ContainsFunc(ns.Run, func(o *Command) bool { return o.Line == c.Line }):
				d.errorf(item, "%s: run: %q is listed twice", label, c.Line)
			default:
				ns.Run = append(ns.Run, c)
			}
		}
	}
	if v := f.val("exec"); v != nil {
		items, _ := d.list(v, label+": exec")
		for _, item := range items {
			// The same command may be listed twice: each entry runs, in order.
			if s, ok := d.commandLine(item, label+": exec"); ok {
				ns.Exec = append(ns.Exec, &Exec{Pos: pos(item), Line: s})
			}
		}
	}
	if v := f.val("serve"); v != nil {
		items, _ := d.list(v, label+": serve")
		for _, item := range items {
			if svc := d.service(item, label); svc != nil {
				if slices.ContainsFunc(ns.Serve, func(o *Service) bool { return o.Port == svc.Port }) {
					d.errorf(item, "%s: serve: port %d is served twice", label, svc.Port)
					continue
				}
				ns.Serve = append(ns.Serve, svc)
			}
		}
	}
}

// commandLine reads a shell command written on one non-empty line.
func (d *decoder) commandLine(n *yaml.Node, label string) (string, bool) {
	s, ok := d.str(n, label)
	switch {
	case !ok:
		return "", false
	case strings.TrimSpace(s) == "":
		d.errorf(n, "%s: empty command", label)
		return "", false
	case strings.ContainsAny(s, "\x00\n\r"):
		d.errorf(n, "%s: a command is one line; write each command as its own item", label)
		return "", false
	}
	return s, true
}

// runEntry reads one `run:` entry: a command line, or {cmd, ready, timeout}.
func (d *decoder) runEntry(n *yaml.Node, nsl string) *Command {
	label := nsl + ": run"
	if n.Kind != yaml.MappingNode {
		s, ok := d.commandLine(n, label)
		if !ok {
			return nil
		}
		return &Command{Pos: pos(n), Line: s}
	}
	f, good := d.fields(n, label, "cmd", "ready", "timeout")
	c := &Command{Pos: pos(n)}
	if v := f.val("cmd"); v == nil {
		d.errorf(n, "%s: missing cmd: (the command to run)", label)
		good = false
	} else if s, ok := d.commandLine(v, label+": cmd"); ok {
		c.Line = s
	} else {
		good = false
	}
	if v := f.val("ready"); v != nil {
		c.Ready = d.ready(v, label+": ready")
		good = good && c.Ready != nil
	}
	if v := f.val("timeout"); v != nil {
		t, ok := d.duration(v, label+": timeout")
		c.Timeout, good = t, good && ok
		if ok && f.val("ready") == nil {
			d.errorf(f["timeout"].key, "%s: timeout is how long up waits for ready:, which is not given", label)
			good = false
		}
	}
	if !good {
		return nil
	}
	return c
}

var readyKinds = []string{"tcp", "http", "file"}

// ready reads {tcp: PORT}, {http: URL} or {file: PATH}.
func (d *decoder) ready(n *yaml.Node, label string) *Ready {
	ps, ok := d.mapping(n, label)
	if !ok {
		return nil
	}
	if len(ps) > 1 {
		d.errorf(n, "%s: give one of tcp, http or file, not several", label)
		return nil
	}
	if len(ps) != 1 || !slices.Contains(readyKinds, ps[0].key.Value) {
		d.errorf(n, "%s: want one of {tcp: PORT}, {http: URL} or {file: PATH}", label)
		return nil
	}
	r := &Ready{Pos: pos(n), Kind: ps[0].key.Value}
	v, label := ps[0].value, label+": "+r.Kind
	switch r.Kind {
	case "tcp":
		port, ok := d.integer(v, label, 1, 65535)
		if !ok {
			return nil
		}
		r.Port = uint16(port)
	case "http":
		s, ok := value(d, v, label, parseReadyURL)
		if !ok {
			return nil
		}
		r.URL = s
	case "file":
		s, ok := d.str(v, label)
		if !ok {
			return nil
		}
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "\x00\n") {
			d.errorf(v, "%s: want an absolute path such as /run/web.ready, got %q", label, s)
			return nil
		}
		r.Path = s
	}
	return r
}

// duration reads a Go duration such as 20s, 1m30s or 500ms, positive and at most
// MaxReadyTimeout.
func (d *decoder) duration(n *yaml.Node, label string) (time.Duration, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) || n.ShortTag() != "!!str" {
		d.errorf(n, "%s: want a duration such as 20s, 1m30s or 500ms, got %s", label, describe(n))
		return 0, false
	}
	t, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		d.errorf(n, "%s: invalid duration %q (want a duration such as 20s, 1m30s or 500ms)", label, n.Value)
		return 0, false
	case t <= 0 || t > MaxReadyTimeout:
		d.errorf(n, "%s: %s is out of range (want more than 0 and at most %s)", label, n.Value, MaxReadyTimeout)
		return 0, false
	}
	return t, true
}

// service reads one `serve:` entry: {http: PORT, body: TEXT} or {tcp-echo: PORT}.
func (d *decoder) service(n *yaml.Node, nsl string) *Service {
	label := nsl + ": serve"
	f, ok := d.fields(n, label, "http", "tcp-echo", "body", "dns")
	if !ok {
		return nil
	}
	svc := &Service{Pos: pos(n)}
	if v := f.val("dns"); v != nil {
		return d.dnsEntry(svc, f, v, nsl)
	}
	for _, kind := range []string{"http", "tcp-echo"} {
		v := f.val(kind)
		if v == nil {
			continue
		}
		if svc.Kind != "" {
			d.errorf(v, "%s: give one of http or tcp-echo, not both", label)
			return nil
		}
		port, ok := d.integer(v, label+": "+kind, 1, 65535)
		if !ok {
			return nil
		}
		svc.Kind, svc.Port = kind, uint16(port)
	}
	if svc.Kind == "" {
		d.errorf(n, "%s: want {http: PORT} or {tcp-echo: PORT}", label)
		return nil
	}
	if v := f.val("body"); v != nil {
		if svc.Kind != "http" {
			d.errorf(v, "%s: body is for http services", label)
			return nil
		}
		svc.Body, _ = d.str(v, label+": body")
	} else if svc.Kind == "http" {
		svc.Body = "Hello World"
	}
	return svc
}

func (d *decoder) interfaces(ns *Namespace, n *yaml.Node) {
	ps, ok := d.mapping(n, nsLabel(ns.Name)+": interfaces")
	if !ok {
		// The addresses are unknown, so gateway checks in this namespace would guess.
		d.notes.badAddrs[ns.Name] = true
	}
	for _, p := range ps {
		// The interface is kept even when its name or body is bad, so that the
		// link naming it is not reported as well.
		ifc := &Interface{Pos: pos(p.key), Name: p.key.Value}
		ns.Interfaces = append(ns.Interfaces, ifc)
		if err := checkIfname(ifc.Name); err != nil && ifc.Name != "lo" { // lo: see loopbacks
			d.errorf(p.key, "%s: %v", nsLabel(ns.Name), err)
		}
		label := "interface " + ns.Name + ":" + ifc.Name
		f, ok := d.fields(p.value, label, "addresses", "mac", "mtu")
		if !ok {
			d.notes.badAddrs[ns.Name] = true
		}
		if v := f.val("addresses"); v != nil {
			if ifc.Addresses, ok = d.addresses(v, label); !ok {
				d.notes.badAddrs[ns.Name] = true
			}
		}
		if v := f.val("mac"); v != nil {
			ifc.MAC, _ = value(d, v, label, parseMAC)
		}
		if v := f.val("mtu"); v != nil {
			mtu, _ := d.integer(v, label+": mtu", 68, 65535)
			ifc.MTU = int(mtu)
		}
	}
}

// addresses reads a list of interface addresses; ok is false if any was unreadable.
func (d *decoder) addresses(n *yaml.Node, label string) ([]Address, bool) {
	items, ok := d.list(n, label+": addresses")
	var out []Address
	for _, item := range items {
		p, good := value(d, item, label, parseAddress)
		if !good {
			ok = false
			continue
		}
		if i := slices.IndexFunc(out, func(a Address) bool { return a.Prefix.Addr() == p.Addr() }); i >= 0 {
			d.errorf(item, "%s: address %s is listed twice", label, p.Addr())
			continue
		}
		out = append(out, Address{Pos: pos(item), Prefix: p})
	}
	return out, ok
}

// route reads a route in either form: the iproute2 string or {to, via, dev, metric}.
func (d *decoder) route(n *yaml.Node, nsl string) *Route {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		r, err := parseRoute(n.Value)
		if err != nil {
			d.errorf(n, "route %q in %s: %v", n.Value, nsl, err)
			return nil
		}
		r.Pos = pos(n)
		return r
	}
	label := "route in " + nsl
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: want a string such as \"default via 172.17.0.1\" or a mapping {to, via, dev, metric}, got %s", label, describe(n))
		return nil
	}
	f, _ := d.fields(n, label, "to", "via", "dev", "metric")
	r := &Route{Pos: pos(n)}
	good := true
	if v := f.val("via"); v != nil {
		r.Via, good = value(d, v, label+": via", parseAddr)
	}
	if v := f.val("dev"); v != nil {
		var ok bool
		r.Dev, ok = d.str(v, label+": dev")
		good = good && ok
	}
	if v := f.val("metric"); v != nil {
		m, ok := d.integer(v, label+": metric", 0, 4294967295)
		r.Metric, good = int(m), good && ok
	}
	v := f.val("to")
	if v == nil {
		d.errorf(n, "%s: missing to: (the destination: default, a CIDR or an address)", label)
		return nil
	}
	s, ok := d.str(v, label+": to")
	if !ok || !good {
		return nil
	}
	to, err := parseRouteDest(s, r.Via)
	if err == nil {
		r.To = to
		err = checkRoute(r)
	}
	if err != nil {
		d.errorf(n, "%s: %v", label, err)
		return nil
	}
	return r
}

func (d *decoder) sysctls(ns *Namespace, n *yaml.Node) {
	nsl := nsLabel(ns.Name)
	ps, _ := d.mapping(n, nsl+": sysctls")
	for _, p := range ps {
		key := p.key.Value
		if err := checkSysctlKey(key); err != nil {
			d.errorf(p.key, "sysctl %q in %s: %v", key, nsl, err)
			continue
		}
		v := p.value
		label := fmt.Sprintf("sysctl %s in %s", key, nsl)
		if v.Kind != yaml.ScalarNode || isNull(v) || v.ShortTag() == "!!bool" {
			// A boolean is refused: YAML would turn `on` into true, and the kernel wants 1.
			d.errorf(v, "%s: want a number or a string such as 1, got %s", label, describe(v))
			continue
		}
		if strings.ContainsAny(v.Value, "\x00\n") {
			d.errorf(v, "%s: the value must be one line", label)
			continue
		}
		value, err := canonicalSysctlValue(v.Value)
		if err != nil {
			d.errorf(v, "%s: %v", label, err)
			continue
		}
		ns.Sysctls = append(ns.Sysctls, &Sysctl{Pos: pos(p.key), Key: key, Value: value})
	}
}

// checkSysctlKey allows only net.* sysctls: the others are shared by the whole
// machine, so setting them would reach beyond the lab.
func checkSysctlKey(key string) error {
	sep := "."
	if strings.HasPrefix(key, "net/") {
		sep = "/"
	} else if !strings.HasPrefix(key, "net.") {
		return errors.New("only net.* sysctls belong to a network namespace; this one would change the whole machine")
	}
	if !sysctlKeyRE.MatchString(key) || strings.Contains(key, "..") || slices.Contains(strings.Split(key, sep), "") {
		return errors.New(`want a key such as net.ipv4.ip_forward (letters, digits, "_", "-", "." or "/")`)
	}
	return nil
}

var natActions = []string{"masquerade", "snat", "dnat"}

// natRule reads {masquerade: {...}}, {snat: {...}} or {dnat: {...}}.
func (d *decoder) natRule(n *yaml.Node, nsl string) *NATRule {
	label := "nat rule in " + nsl
	ps, ok := d.mapping(n, label)
	if !ok {
		return nil
	}
	if len(ps) != 1 || !slices.Contains(natActions, ps[0].key.Value) {
		d.errorf(n, "%s: want one key, masquerade, snat or dnat, as in {masquerade: {out: eth0}}", label)
		return nil
	}
	r := &NATRule{Pos: pos(n), Action: ps[0].key.Value}
	label = r.Action + " rule in " + nsl
	body := ps[0].value
	var f fields
	switch r.Action {
	case "masquerade":
		f, _ = d.fields(body, label, "source", "dest", "out", "in")
	case "snat":
		f, _ = d.fields(body, label, "source", "dest", "out", "in", "to")
	case "dnat":
		f, _ = d.fields(body, label, "in", "proto", "port", "to", "source", "dest")
	}
	good := true
	read := func(key string, fn func(*yaml.Node, string) bool) {
		if v := f.val(key); v != nil && !fn(v, label+": "+key) {
			good = false
		}
	}
	read("source", func(v *yaml.Node, l string) (ok bool) { r.Source, ok = value(d, v, l, parseMatchPrefix); return })
	read("dest", func(v *yaml.Node, l string) (ok bool) { r.Dest, ok = value(d, v, l, parseMatchPrefix); return })
	read("in", func(v *yaml.Node, l string) (ok bool) { r.In, ok = value(d, v, l, parseIfaceMatch); return })
	read("out", func(v *yaml.Node, l string) (ok bool) { r.Out, ok = value(d, v, l, parseIfaceMatch); return })
	read("proto", func(v *yaml.Node, l string) (ok bool) { r.Proto, ok = d.oneOf(v, l, "tcp", "udp"); return })
	read("port", func(v *yaml.Node, l string) (ok bool) { r.Port, ok = d.portRange(v, l); return })
	if v := f.val("to"); v != nil {
		l := label + ": to"
		if r.Action == "snat" {
			var ok bool
			r.To, ok = value(d, v, l, parseAddr)
			good = good && ok
		} else {
			s, ok := d.str(v, l)
			if ok {
				var err error
				if r.To, r.ToPort, err = parseDNATTarget(s); err != nil {
					d.errorf(v, "%s: %v", l, err)
					ok = false
				}
			}
			good = good && ok
		}
	} else if r.Action != "masquerade" {
		what := "the address to rewrite the source to"
		if r.Action == "dnat" {
			what = "where to send the traffic, e.g. 10.0.0.5:80"
		}
		d.errorf(n, "%s: missing to: (%s)", label, what)
		good = false
	}
	if !good {
		return nil
	}
	if (r.Port != PortRange{} || r.ToPort != PortRange{}) && r.Proto == "" {
		d.errorf(n, "%s: a port needs proto: tcp or udp", label)
		return nil
	}
	if err := sameFamily(r.Source, r.Dest, r.To); err != nil {
		d.errorf(n, "%s: %v", label, err)
		return nil
	}
	return r
}

var (
	chains      = []string{"forward", "input", "output"}
	filterProto = []string{"tcp", "udp", "icmp", "icmpv6"}
	ctStates    = []string{"new", "established", "related", "invalid"}
	verdicts    = []string{"accept", "drop", "reject"}
)

func (d *decoder) filterRule(n *yaml.Node, nsl string) *FilterRule {
	label := "filter rule in " + nsl
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: want a mapping such as {chain: forward, action: accept}, got %s", label, describe(n))
		return nil
	}
	f, _ := d.fields(n, label, "chain", "in", "out", "source", "dest", "proto", "sport", "dport", "state", "action")
	r := &FilterRule{Pos: pos(n)}
	good := true
	read := func(key string, fn func(*yaml.Node, string) bool) {
		if v := f.val(key); v != nil && !fn(v, label+": "+key) {
			good = false
		}
	}
	read("chain", func(v *yaml.Node, l string) (ok bool) { r.Chain, ok = d.oneOf(v, l, chains...); return })
	read("action", func(v *yaml.Node, l string) (ok bool) { r.Action, ok = d.oneOf(v, l, verdicts...); return })
	read("in", func(v *yaml.Node, l string) (ok bool) { r.In, ok = value(d, v, l, parseIfaceMatch); return })
	read("out", func(v *yaml.Node, l string) (ok bool) { r.Out, ok = value(d, v, l, parseIfaceMatch); return })
	read("source", func(v *yaml.Node, l string) (ok bool) { r.Source, ok = value(d, v, l, parseMatchPrefix); return })
	read("dest", func(v *yaml.Node, l string) (ok bool) { r.Dest, ok = value(d, v, l, parseMatchPrefix); return })
	read("proto", func(v *yaml.Node, l string) (ok bool) { r.Proto, ok = d.oneOf(v, l, filterProto...); return })
	read("sport", func(v *yaml.Node, l string) (ok bool) { r.SPort, ok = d.portRange(v, l); return })
	read("dport", func(v *yaml.Node, l string) (ok bool) { r.DPort, ok = d.portRange(v, l); return })
	read("state", func(v *yaml.Node, l string) bool {
		items, ok := d.list(v, l)
		for _, item := range items {
			s, good := d.oneOf(item, l, ctStates...)
			switch {
			case !good:
				ok = false
			case slices.Contains(r.State, s):
				d.errorf(item, "%s: %s is listed twice", l, s)
			default:
				r.State = append(r.State, s)
			}
		}
		return ok
	})
	for _, key := range []string{"chain", "action"} {
		if f.val(key) == nil {
			d.errorf(n, "%s: missing %s: (want one of %s)", label, key, strings.Join(map[string][]string{"chain": chains, "action": verdicts}[key], ", "))
			good = false
		}
	}
	if !good {
		return nil
	}
	switch {
	case (r.SPort != PortRange{} || r.DPort != PortRange{}) && r.Proto != "tcp" && r.Proto != "udp":
		d.errorf(n, "%s: a port needs proto: tcp or udp", label)
		return nil
	case r.Chain == "input" && r.Out.Name != "":
		d.errorf(f["out"].key, "%s: the input chain sees packets for this namespace, which have no out interface", label)
		return nil
	case r.Chain == "output" && r.In.Name != "":
		d.errorf(f["in"].key, "%s: the output chain sees packets from this namespace, which have no in interface", label)
		return nil
	}
	if err := sameFamily(r.Source, r.Dest, netip.Addr{}); err != nil {
		d.errorf(n, "%s: %v", label, err)
		return nil
	}
	return r
}

// sameFamily refuses a rule that mixes IPv4 and IPv6: it could never match.
func sameFamily(source, dest netip.Prefix, to netip.Addr) error {
	var first netip.Addr
	for _, a := range []netip.Addr{source.Addr(), dest.Addr(), to} {
		if !a.IsValid() {
			continue
		}
		if !first.IsValid() {
			first = a
		} else if a.Is4() != first.Is4() {
			return fmt.Errorf("mixes IPv4 and IPv6 addresses (%s and %s)", first, a)
		}
	}
	return nil
}

// oneOf reads a string that must be one of choices.
func (d *decoder) oneOf(n *yaml.Node, label string, choices ...string) (string, bool) {
	s, ok := d.str(n, label)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, s) {
		d.errorf(n, "%s: invalid value %q (want %s)", label, s, strings.Join(choices, ", "))
		return "", false
	}
	return s, true
}

// portRange reads a port, as an integer or a string, or a range "8000-8010".
func (d *decoder) portRange(n *yaml.Node, label string) (PortRange, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		p, ok := d.integer(n, label, 1, 65535)
		return PortRange{uint16(p), uint16(p)}, ok
	}
	return value(d, n, label, parsePortRange)
}

func (d *decoder) links(n *yaml.Node) []*Link {
	items, ok := d.list(n, "links")
	if !ok {
		d.notes.badSections["links"] = true
		d.notes.badLinks = true
	}
	var out []*Link
	for _, item := range items {
		if item.Kind == yaml.MappingNode { // the map form (links_map.go)
			if l := d.linkMap(item); l != nil {
				out = append(out, l)
			} else {
				d.notes.badLinks = true
			}
			continue
		}
		if item.Kind != yaml.SequenceNode || len(item.Content) != 2 {
			got := describe(item)
			if item.Kind == yaml.SequenceNode {
				got = fmt.Sprintf("a list of %d", len(item.Content))
			}
			d.errorf(item, "link: want two ends [END, END], such as [web:eth0, docker0], or a mapping {ends: [END, END], rate: ...}, got %s", got)
			d.notes.badLinks = true
			continue
		}
		l := &Link{Pos: pos(item)}
		good := true
		for i, c := range item.Content {
			c = resolve(c)
			s, ok := d.str(c, "link end")
			if ok {
				if err := parseEnd(s); err != nil {
					d.errorf(c, "link: %v", err)
					ok = false
				}
			}
			l.Ends[i] = &End{Pos: pos(c), Text: s}
			good = good && ok
		}
		if !good {
			d.notes.badLinks = true
			continue
		}
		out = append(out, l)
	}
	return out
}

var checkKinds = []string{"ping", "tcp", "http", "traceroute"}

func (d *decoder) checks(n *yaml.Node) []*Check {
	items, _ := d.list(n, "checks")
	var out []*Check
	for _, item := range items {
		if c, ok := d.extraCheck(item); ok { // mesh and throughput (checks_extra.go)
			if c != nil {
				out = append(out, c)
			}
			continue
		}
		if item.Kind != yaml.MappingNode {
			d.errorf(item, "check: want a mapping such as {from: web, ping: 172.17.0.1}, got %s", describe(item))
			continue
		}
		f, _ := d.fields(item, "check", "from", "ping", "tcp", "http", "traceroute", "expect")
		c := &Check{Pos: pos(item)}
		good := true
		if v := f.val("from"); v == nil {
			d.errorf(item, "check: missing from: (the namespace to run it in)")
			good = false
		} else if c.From, good = d.str(v, "check: from"); good && c.From != HostName && !namespaceRE.MatchString(c.From) {
			d.errorf(v, "check: from: invalid namespace name %q", c.From)
			good = false
		}
		for _, kind := range checkKinds {
			v := f.val(kind)
			if v == nil {
				continue
			}
			if c.Kind != "" {
				d.errorf(f[kind].key, "check: both %s and %s; want exactly one of ping, tcp, http or traceroute", c.Kind, kind)
				good = false
				continue
			}
			c.Kind = kind
			s, ok := d.str(v, "check: "+kind)
			if ok {
				err := map[string]func(string) error{"ping": checkPing, "tcp": checkTCP, "http": checkHTTP, "traceroute": checkPing}[kind](s)
				if err != nil {
					d.errorf(v, "check: %s: %v", kind, err)
					ok = false
				}
			}
			c.Target, good = s, good && ok
		}
		if c.Kind == "" {
			d.errorf(item, "check: want one of ping, tcp, http or traceroute")
			good = false
		}
		if v := f.val("expect"); v != nil && !d.expect(c, v) {
			good = false
		}
		if good {
			out = append(out, c)
		}
	}
	return out
}

// expect reads `expect: fail` or `expect: {status, body, source}`.
func (d *decoder) expect(c *Check, n *yaml.Node) bool {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		if n.Value != "fail" {
			d.errorf(n, "check: expect: want fail or a mapping {status, body, source, hops}, got %s", describe(n))
			return false
		}
		c.ExpectFail = true
		return true
	}
	f, ok := d.fields(n, "check: expect", "status", "body", "source", "hops")
	if v := f.val("status"); v != nil {
		s, good := d.integer(v, "check: expect: status", 100, 599)
		c.ExpectStatus, ok = int(s), ok && good
		if good && c.Kind != "http" {
			d.errorf(f["status"].key, "check: expect: status is for http checks")
			ok = false
		}
	}
	if v := f.val("body"); v != nil {
		s, good := d.str(v, "check: expect: body")
		c.ExpectBody, ok = s, ok && good
		if good && c.Kind != "http" {
			d.errorf(f["body"].key, "check: expect: body is for http checks")
			ok = false
		}
	}
	if v := f.val("source"); v != nil {
		a, good := value(d, v, "check: expect: source", parseAddr)
		c.ExpectSource, ok = a, ok && good
	}
	if v := f.val("hops"); v != nil {
		if c.Kind != "traceroute" {
			d.errorf(f["hops"].key, "check: expect: hops is for traceroute checks")
			return false
		}
		items, good := d.list(v, "check: expect: hops")
		ok = ok && good
		for _, item := range items {
			a, good := value(d, item, "check: expect: hops", parseAddr)
			c.ExpectHops, ok = append(c.ExpectHops, a), ok && good
		}
	}
	return ok
}
