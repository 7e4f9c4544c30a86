package topology

// The walker: small explicit helpers that read one kind of YAML node each and
// report, at the node's position, what is wrong with it. The section decoders in
// parse.go are written with these, instead of reflection, so that every value
// keeps its line and column and every problem is reported, not just the first.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder walks the yaml.Node tree of one file and collects errors as it goes.
type decoder struct {
	file   string
	errs   Errors
	notes  parseNotes
	ranges map[Pos]*rangeInfo // positions inside the body of a range (ranges.go)
}

func (d *decoder) errorAt(p Pos, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Pos: p, Msg: rangeHint(fmt.Sprintf(format, args...))})
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errorAt(pos(n), format, args...)
}

func pos(n *yaml.Node) Pos {
	return Pos{n.Line, n.Column}
}

// resolve follows aliases to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// describe names what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!int":
		return "the integer " + v
	case "!!float":
		return "the number " + v
	case "!!bool":
		return "the boolean " + v
	}
	return fmt.Sprintf("the string %q", v)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// pair is one entry of a mapping, aliases resolved.
type pair struct{ key, value *yaml.Node }

// mapping returns the entries of a mapping in file order; an empty value (`key:`)
// is an empty mapping. It reports a node of another kind and duplicate keys.
// YAML merge keys (`<<: *base`) are expanded, the entries written next to them winning.
func (d *decoder) mapping(n *yaml.Node, label string) ([]pair, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: want a mapping, got %s", label, describe(n))
		return nil, false
	}
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSource(v, label)...)
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.errorf(k, "%s: want a name as key, got %s", label, describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "%s: duplicate key %q (first at line %d)", label, k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, v})
	}
	for _, p := range merged {
		if seen[p.key.Value] == nil {
			seen[p.key.Value] = p.key
			out = append(out, p)
		}
	}
	return out, true
}

// mergeSource returns the entries a merge key brings in: a mapping, or a list of
// mappings of which the first to hold a key wins.
func (d *decoder) mergeSource(v *yaml.Node, label string) []pair {
	if v.Kind == yaml.MappingNode {
		ps, _ := d.mapping(v, label)
		return ps
	}
	if v.Kind == yaml.SequenceNode {
		var out []pair
		for _, item := range v.Content {
			if item = resolve(item); item.Kind != yaml.MappingNode {
				d.errorf(item, "%s: <<: want a mapping or a list of mappings, got %s", label, describe(item))
				continue
			}
			ps, _ := d.mapping(item, label)
			out = append(out, ps...)
		}
		return out
	}
	d.errorf(v, "%s: <<: want a mapping or a list of mappings, got %s", label, describe(v))
	return nil
}

// fields is a mapping with a fixed set of keys.
type fields map[string]pair

// val returns the value of key k, or nil when the key is absent.
func (f fields) val(k string) *yaml.Node {
	if p, ok := f[k]; ok {
		return p.value
	}
	return nil
}

// fields reads a mapping whose keys must be among known, reporting the others
// at the key's position.
func (d *decoder) fields(n *yaml.Node, label string, known ...string) (fields, bool) {
	ps, ok := d.mapping(n, label)
	f := fields{}
	for _, p := range ps {
		if !slices.Contains(known, p.key.Value) {
			d.errorf(p.key, "unknown key %q in %s (known: %s)", p.key.Value, label, strings.Join(known, ", "))
			continue
		}
		f[p.key.Value] = p
	}
	return f, ok
}

// list returns the items of a list, aliases resolved; an empty value is an empty list.
func (d *decoder) list(n *yaml.Node, label string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf(" (write [%s] for a list of one)", n.Value)
		}
		d.errorf(n, "%s: want a list, got %s%s", label, describe(n), hint)
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items, true
}

// str reads a scalar as the text written. Numbers are fine where text is expected
// (a namespace called 1, a description of 42): the text is what the user meant.
func (d *decoder) str(n *yaml.Node, label string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n, "%s: want a string, got %s", label, describe(n))
		return "", false
	}
	return n.Value, true
}

// integer reads an integer in [lo, hi]. A quoted number is a string, and an error:
// strict typing catches `mtu: "1500"` copied from a JSON file, and keeps one spelling.
func (d *decoder) integer(n *yaml.Node, label string, lo, hi int64) (int64, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errorf(n, "%s: want an integer from %d to %d, got %s", label, lo, hi, describe(n))
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || v < lo || v > hi {
		d.errorf(n, "%s: %s is out of range (want %d to %d)", label, n.Value, lo, hi)
		return 0, false
	}
	return v, true
}

// boolean reads true or false.
func (d *decoder) boolean(n *yaml.Node, label string) (bool, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.errorf(n, "%s: want true or false, got %s", label, describe(n))
		return false, false
	}
	v, err := strconv.ParseBool(n.Value)
	if err != nil {
		d.errorf(n, "%s: want true or false, got %s", label, describe(n))
		return false, false
	}
	return v, true
}

// value reads a string with parse and reports parse's error after the label.
func value[T any](d *decoder, n *yaml.Node, label string, parse func(string) (T, error)) (T, bool) {
	var zero T
	s, ok := d.str(n, label)
	if !ok {
		return zero, false
	}
	v, err := parse(s)
	if err != nil {
		d.errorf(n, "%s: %v", label, err)
		return zero, false
	}
	return v, true
}

// nsLabel names a namespace in messages: "host" or "namespace web".
func nsLabel(name string) string {
	if name == HostName {
		return HostName
	}
	return "namespace " + name
}
