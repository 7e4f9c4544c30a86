package topology

// docs/topology.schema.json is a JSON Schema of the lab file for editors. The parser
// is the reference; these tests keep the schema true to it:
//   - every lab and testdata/valid-*.yaml passes the schema;
//   - every testdata/invalid-*.yaml fails it, except the files in schemaBlind, whose
//     mistakes a schema cannot see (and which must keep passing it, so that the list
//     stays true);
//   - the schema's value patterns (addresses, MACs, routes, ports...) agree with the
//     parser's value readers, on hand-picked and on generated values.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const (
	schemaPath = "../docs/topology.schema.json"
	schemaID   = "https://netlab.invalid/topology.schema.json"
)

// schemaBlind lists the testdata/invalid-*.yaml files the schema cannot reject,
// with the reason. notJSON: the YAML decoder an editor uses refuses the file
// before a schema sees it. The others decode, and the schema accepts them: their
// mistakes lie between values (a schema sees each value on its own) or in the file.
var schemaBlind = []struct {
	file    string
	notJSON bool
	why     string
}{
	{"invalid-alias-bomb.yaml", true, "alias bomb: the YAML decoder refuses excessive aliasing"},
	{"invalid-alias-cycle.yaml", true, "an alias inside its own anchor: the YAML decoder refuses it"},
	{"invalid-duplicate-key.yaml", true, "duplicate YAML keys: the decoder refuses them; JSON has no duplicates to check"},
	{"invalid-yaml-syntax.yaml", true, "YAML syntax error"},
	{"invalid-binary.yaml", true, "not text: control characters"},
	{"invalid-unclosed-flow.yaml", true, "YAML syntax error: an unclosed flow list"},
	{"invalid-yaml-tab.yaml", true, "a tab in the indentation: YAML syntax error"},
	{"invalid-yaml-indent.yaml", true, "a key indented between two mappings: YAML syntax error"},
	{"invalid-yaml-indent-deep.yaml", true, "a key indented between two mappings: YAML syntax error"},

	{"invalid-bridge-overlap.yaml", false, "overlapping subnets of two bridges: compares values of two bridges"},
	{"invalid-bridge-docker-daemon.yaml", false, "two iptables bridges' userland-proxy (values of two bridges); docker-version with firewall: nftables"},
	{"invalid-duplicate-interface.yaml", false, "an interface named twice (by a bridge, two links, a generated port name)"},
	{"invalid-interface-unlinked.yaml", false, "interfaces: entries that no link names, or that are a bridge or a bridge port"},
	{"invalid-link-end-no-interface.yaml", false, "a bare link end naming a namespace, not a bridge: needs the namespaces' names"},
	{"invalid-link-end-twice.yaml", false, "one interface in two links"},
	{"invalid-netns-prefix-host.yaml", false, "netns-prefix and a namespace's name that together make \"host\": compares two values"},
	{"invalid-link-unknown-bridge.yaml", false, "a link to an undeclared bridge (dangling reference)"},
	{"invalid-link-unknown-namespace.yaml", false, "a link to an undeclared namespace (dangling reference)"},
	{"invalid-name-clash.yaml", false, "a bridge named like a namespace"},
	{"invalid-publish-duplicate.yaml", false, "one host port published by two namespaces"},
	{"invalid-shared-port.yaml", false, "a run: entry ready on a TCP port a serve: or another run: entry listens on: compares values of two entries"},
	{"invalid-route-duplicate.yaml", false, "two routes with one destination and metric, written differently"},
	{"invalid-route-gateway-outside.yaml", false, "gateways outside the namespace's subnets, or its own address"},
	{"invalid-two-documents.yaml", false, "a second YAML document: a schema validates one document"},
	{"invalid-sysctl-value.yaml", false, "sysctl values in hex, with a leading zero (octal to the kernel) or blank: YAML reads 0x1 as the number 1, and a pattern per field of a string would be unreadable"},
}

var schemaCompiler struct {
	once sync.Once
	c    *jsonschema.Compiler
	err  error
}

// compileSchema compiles the schema, or the part of it at a JSON pointer
// ("#/$defs/address"); "" is the whole schema.
func compileSchema(t testing.TB, pointer string) *jsonschema.Schema {
	t.Helper()
	s := &schemaCompiler
	s.once.Do(func() {
		data, err := os.ReadFile(schemaPath)
		if err != nil {
			s.err = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			s.err = fmt.Errorf("%s: %v", schemaPath, err)
			return
		}
		s.c = jsonschema.NewCompiler()
		s.err = s.c.AddResource(schemaID, doc)
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	sch, err := s.c.Compile(schemaID + pointer)
	if err != nil {
		t.Fatalf("compile %s%s: %v", schemaPath, pointer, err)
	}
	return sch
}

// yamlToJSON reads a YAML document as an editor's schema validator does: decoded
// into plain values (ints stay numbers), map keys turned into strings. Only the
// first document is read.
func yamlToJSON(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return jsonValue(v)
}

func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string, int, int64, uint64, float64:
		return v, nil
	case time.Time: // a bare timestamp; the parser reads it as text
		return v.Format(time.RFC3339Nano), nil
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			var err error
			if out[i], err = jsonValue(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			var err error
			if out[k], err = jsonValue(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			var err error
			if out[fmt.Sprint(k)], err = jsonValue(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("YAML value of type %T", v)
}

func validateFile(t *testing.T, sch *jsonschema.Schema, file string) (decodeErr, schemaErr error) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := yamlToJSON(data)
	if err != nil {
		return err, nil
	}
	return nil, sch.Validate(doc)
}

func TestSchemaAcceptsValidLabs(t *testing.T) {
	sch := compileSchema(t, "")
	labs, _ := filepath.Glob("../labs/*.yaml")
	valid, _ := filepath.Glob("testdata/valid-*.yaml")
	if len(labs) == 0 || len(valid) == 0 {
		t.Fatalf("found %d labs and %d valid testdata files", len(labs), len(valid))
	}
	for _, file := range append(labs, valid...) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, err := Load(file); err != nil {
				t.Fatalf("netlab refuses it, so the schema has nothing to agree with: %v", err)
			}
			decodeErr, schemaErr := validateFile(t, sch, file)
			if decodeErr != nil {
				t.Fatalf("YAML: %v", decodeErr)
			}
			if schemaErr != nil {
				t.Errorf("the schema refuses a lab netlab accepts:\n%v", schemaErr)
			}
		})
	}
}

func TestSchemaRejectsInvalidLabs(t *testing.T) {
	sch := compileSchema(t, "")
	files, _ := filepath.Glob("testdata/invalid-*.yaml")
	if len(files) < 30 {
		t.Fatalf("want at least 30 invalid labs, got %d", len(files))
	}
	blind := map[string]int{}
	for i, b := range schemaBlind {
		if _, err := os.Stat(filepath.Join("testdata", b.file)); err != nil {
			t.Errorf("schemaBlind lists %s: %v", b.file, err)
		}
		blind[b.file] = i
	}
	rejected := 0
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			if _, err := Load(file); err == nil {
				t.Fatalf("netlab accepts %s", file)
			}
			decodeErr, schemaErr := validateFile(t, sch, file)
			i, isBlind := blind[name]
			switch {
			case !isBlind && decodeErr != nil:
				t.Errorf("YAML decoding failed (%v); list the file in schemaBlind with notJSON if that is expected", decodeErr)
			case !isBlind && schemaErr == nil:
				t.Errorf("the schema accepts it; make the schema catch the mistake, or list the file in schemaBlind with the reason")
			case !isBlind:
				rejected++
			case schemaBlind[i].notJSON && decodeErr == nil:
				t.Errorf("schemaBlind says the YAML decoder refuses it (%s), but it decodes", schemaBlind[i].why)
			case !schemaBlind[i].notJSON && decodeErr != nil:
				t.Errorf("schemaBlind says the schema accepts it (%s), but YAML decoding fails: %v", schemaBlind[i].why, decodeErr)
			case !schemaBlind[i].notJSON && schemaErr != nil:
				t.Errorf("schemaBlind says the schema cannot catch it (%s), but the schema rejects it; remove it from schemaBlind:\n%v", schemaBlind[i].why, schemaErr)
			}
		})
	}
	t.Logf("%d invalid files: %d rejected by the schema, %d listed in schemaBlind", len(files), rejected, len(schemaBlind))
}

// TestSchemaSnippets: small labs, valid ones in the less usual spellings the parser
// takes (bare numbers as names, empty sections, merge keys), and invalid ones whose
// mistake lies within one mapping (which a schema can see). netlab must agree.
func TestSchemaSnippets(t *testing.T) {
	sch := compileSchema(t, "")
	valid := []string{
		"name: 2024\ndescription: 42\nnetns-prefix: 7\nhost:\nbridges:\nnamespaces:\nlinks:\nchecks:\n",
		"name: a\nnamespaces:\n  1:\n  web: {interfaces: {eth0: }, routes: [], sysctls: {}, nat: [], filter: [], publish: [], run: [], serve: []}\n" +
			"links: [[web:eth0, host:web0]]\nchecks: [{from: 1, ping: web, expect: }]\n",
		"name: a\nnamespaces:\n  web: &base {run: [true, 42]}\n  c2: {<<: *base}\n",
		"name: a\nnamespaces:\n  r:\n    interfaces: {lan0: {addresses: [10.0.0.1/24]}}\n" +
			"    nat: [{masquerade: }, {masquerade: {in: \"!lan0\", dest: 192.0.2.0/24}}, {dnat: {to: \"[2001:db8::5]\", dest: \"2001:db8::/32\"}}]\n" +
			"    filter: [{chain: output, out: lan0, proto: udp, sport: \"1000-2000\", dport: 53, action: drop}, {chain: input, proto: icmpv6, action: accept, state: }]\n" +
			"links: [[r:lan0, host:r0]]\n",
		"name: a\nbridges:\n  br0: {namespace: r, masquerade: false, icc: false, isolated: true, resolve: true, mac: 0242.ac11.0002, mtu: 9000, multicast-snooping: false}\n" +
			"namespaces:\n  r:\n  h:\n    interfaces: {eth0: {addresses: [10.0.0.2/24]}}\n" +
			"    routes: [{to: 10.9.0.0/16, via: 10.0.0.1, metric: 0}, {to: default, via: 10.0.0.1, dev: eth0}, 10.8.0.0/16 dev eth0 metric 5]\n" +
			"    sysctls: {net.ipv4.ping_group_range: \"0 2147483647\", net.ipv4.tcp_rmem: 4096 87380 6291456, net.core.x: 1.5}\n" +
			"    publish: [\"127.0.0.1:8000:80/udp\"]\n" +
			"    serve: [{http: 80}, {tcp-echo: 7}]\n" +
			"links: [[h:eth0, br0]]\n" +
			"checks:\n  - {from: h, traceroute: 10.0.0.1, expect: {hops: [10.0.0.1], source: 10.0.0.2}}\n" +
			"  - {from: host, tcp: \"h:80\"}\n  - {from: h, http: \"http://h/\", expect: {status: 404, body: 404}}\n",
	}
	invalid := []string{
		"name: a\nbridges: {br0: {masquerade: true}}\n",
		"name: a\nbridges: {br0: {masquerade: true, addresses: []}}\n",
		"name: a\nbridges: {br0: {icc: \"true\"}}\n",
		"name: a\nnamespaces: {w: {serve: [{tcp-echo: 7, body: x}]}}\n",
		"name: a\nnamespaces: {w: {serve: [{body: x}]}}\n",
		"name: a\nnamespaces: {w: {serve: [{http: \"80\"}]}}\n",
		"name: a\nnamespaces: {w: {filter: [{chain: input, out: eth0, action: drop}]}}\n",
		"name: a\nnamespaces: {w: {filter: [{chain: output, in: eth0, action: drop}]}}\n",
		"name: a\nnamespaces: {w: {filter: [{chain: forward, proto: icmp, dport: 1, action: drop}]}}\n",
		"name: a\nnamespaces: {w: {filter: [{chain: forward, state: [new, new], action: drop}]}}\n",
		"name: a\nnamespaces: {w: {filter: [{chain: forward, source: 10.0.0.0/8, dest: \"2001:db8::/32\", action: drop}]}}\n",
		"name: a\nnamespaces: {w: {nat: [{dnat: {to: \"10.0.0.5:80\"}}]}}\n",
		"name: a\nnamespaces: {w: {nat: [{dnat: {to: \"2001:db8::5\", source: 10.0.0.0/8}}]}}\n",
		"name: a\nnamespaces: {w: {nat: [{snat: {to: 10.0.0.1, dest: \"::1\"}}]}}\n",
		"name: a\nnamespaces: {w: {nat: [{masquerade: {to: 10.0.0.1}}]}}\n",
		"name: a\nnamespaces: {w: {nat: [{}]}}\n",
		"name: a\nnamespaces: {w: {routes: [{to: 10.0.0.0/8}]}}\n",
		"name: a\nnamespaces: {w: {routes: [{to: 10.0.0.0/8, via: \"2001:db8::1\"}]}}\n",
		"name: a\nnamespaces: {w: {routes: [{to: \"::/0\", via: \"fe80::1\"}]}}\n",
		"name: a\nnamespaces: {w: {routes: [{to: 10.0.0.0/8, dev: eth0, metric: -1}]}}\n",
		"name: a\nnamespaces: {w: {routes: [default via 10.0.0.1, default via 10.0.0.1]}}\n",
		"name: a\nnamespaces: {w: {sysctls: {net.ipv4.ip_forward: }}}\n",
		"name: a\nnamespaces: {w: {publish: [\"8000:80\", \"8000:80\"]}}\n",
		"name: a\nnamespaces: {w: }\nchecks: [{from: w, ping: 10.0.0.1, expect: {hops: [10.0.0.1]}}]\n",
		"name: a\nnamespaces: {w: }\nchecks: [{from: w, tcp: \"10.0.0.1:80\", expect: {body: x}}]\n",
		"name: a\nnamespaces: {w: }\nchecks: [{from: w, ping: 10.0.0.1, extra: 1}]\n",
		"name: a\nlinks: [[a:eth0, b:eth0], [a:eth0, b:eth0]]\nnamespaces: {a: , b: }\n",
		"name: a\nnetns-prefix: Lab1\n",
	}
	// The schema is stricter than netlab here, on purpose: a boolean where a name
	// is expected is read by netlab as its text ("true"), but an editor would then
	// offer true and false as completions for every name.
	stricter := []string{
		"name: true\n",
		"name: a\nnamespaces: {w: , \"false\": }\nchecks: [{from: w, ping: false}]\n",
	}
	for i, src := range valid {
		t.Run(fmt.Sprintf("valid-%d", i), func(t *testing.T) {
			if _, err := loadString(src); err != nil {
				t.Fatalf("netlab refuses it:\n%v\n%s", err, src)
			}
			doc, err := yamlToJSON([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Errorf("the schema refuses it:\n%v\n%s", err, src)
			}
		})
	}
	for i, src := range stricter {
		t.Run(fmt.Sprintf("stricter-%d", i), func(t *testing.T) {
			if _, err := loadString(src); err != nil {
				t.Fatalf("netlab refuses it; move it to invalid:\n%v", err)
			}
			doc, err := yamlToJSON([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if sch.Validate(doc) == nil {
				t.Errorf("the schema accepts it; move it to valid:\n%s", src)
			}
		})
	}
	for i, src := range invalid {
		t.Run(fmt.Sprintf("invalid-%d", i), func(t *testing.T) {
			if _, err := loadString(src); err == nil {
				t.Fatalf("netlab accepts it:\n%s", src)
			}
			doc, err := yamlToJSON([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if sch.Validate(doc) == nil {
				t.Errorf("the schema accepts it:\n%s", src)
			}
		})
	}
}

// loadString parses and validates a lab given as text.
func loadString(src string) (*Lab, error) {
	lab, notes, errs := parse([]byte(src), "snippet.yaml")
	if lab != nil {
		errs = append(errs, validate(lab, notes)...)
	}
	if len(errs) > 0 {
		return lab, errs.sorted()
	}
	return lab, nil
}

// --- Values: the schema's patterns against the parser's readers ---------------------

// valueCase is one kind of value: the part of the schema that checks it and the
// parser's verdict on it.
type valueCase struct {
	name    string
	pointer string
	parser  func(string) error
	// gap says, for a value the parser refuses and the schema accepts, whether that
	// is a documented limit of the schema (in its $comment) rather than a bug.
	gap func(string) bool

	valid   []string // both accept
	invalid []string // both refuse
	missed  []string // the parser refuses, the schema accepts (known gaps)
}

func errOf[T any](_ T, err error) error { return err }

func valueCases() []valueCase {
	return []valueCase{
		{
			name: "address", pointer: "#/$defs/address",
			parser: func(s string) error { return errOf(parseAddress(s)) },
			gap:    isNetworkOrBroadcast,
			valid: []string{"172.17.0.2/16", "10.0.0.1/8", "192.0.2.1/24", "10.0.0.0/31", "10.0.0.1/32",
				"169.254.0.2/16", "2001:db8::2/64", "2001:DB8:0:0:0:0:0:2/64", "::2/128",
				"2001:db8:1::1:192.0.2.1/96", "fec0::1/10", "255.255.255.255/32"},
			invalid: []string{"172.17.0.300/16", "172.17.0.1", "172.18.0.0/16", "172.19.255.255/16",
				"10.0.0.0/8", "10.255.255.255/8", "10.1.2.0/24", "2001:db8::1/129", "0.0.0.0/8",
				"224.0.0.1/24", "127.0.0.2/8", "::1/128", "0:0:0:0:0:0:0:1/128", "::/0", "ff02::1/64",
				"fe80::1/64", "FEBF::1/64", "::ffff:10.0.0.1/104", "::ffff:a00:1/104", "010.0.0.1/8",
				"10.0.0.1/08", "10.0.0.1/33", "1.2.3.4/24 ", "2001:db8::1%eth0/64", "255.255.255.255/24"},
			missed: []string{"10.0.0.0/20", "10.0.15.255/20", "10.0.0.3/30"},
		},
		{
			name: "ip", pointer: "#/$defs/ip",
			parser: func(s string) error { return errOf(parseAddr(s)) },
			valid: []string{"10.0.0.1", "0.0.0.0", "::", "::1", "2001:db8::1", "1:2:3:4:5:6:7:8", "1::",
				"1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "::ffff:192.0.2.1", "1:2:3:4:5:6:192.0.2.1",
				"1::192.0.2.1", "1:2:3:4:5::192.0.2.1", "fe80::1"},
			invalid: []string{"", "10.0.0", "10.0.0.256", "10.00.0.1", "10.0.0.1/32", "1:2:3:4:5:6:7:8:9",
				"1::2::3", ":::", "12345::", "1:2:3:4:5:6:7::8", "fe80::1%eth0", "1:2:3:4:5:6:7:192.0.2.1",
				"::192.0.2.256", " 10.0.0.1", "localhost"},
		},
		{
			name: "gateway", pointer: "#/$defs/gateway",
			parser: func(s string) error {
				a, err := parseAddr(s)
				if err == nil && (a.IsUnspecified() || a.IsMulticast() || a.IsLoopback()) {
					err = fmt.Errorf("gateway %s cannot be a gateway", a)
				}
				return err
			},
			valid:   []string{"172.17.0.1", "2001:db8::1", "fe80::1"},
			invalid: []string{"0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.5", "ff02::2", "10.0.0.1/24"},
		},
		{
			name: "subnet", pointer: "#/$defs/subnet",
			parser: func(s string) error { return errOf(parseMatchPrefix(s)) },
			gap: func(s string) bool {
				p, err := netip.ParsePrefix(s)
				return err == nil && p != p.Masked()
			},
			valid: []string{"10.0.0.0/8", "10.0.0.1", "10.0.0.1/32", "0.0.0.0/0", "10.0.0.0/24",
				"172.16.0.0/12", "2001:db8::/32", "::/0", "2001:db8::1"},
			invalid: []string{"10.0.0.1/8", "10.0.1.0/16", "10.1.0.0/8", "10.0.0.1/24", "1.0.0.0/0",
				"::1/0", "10.0.0.0/33", "nowhere", "fe80::1%eth0"},
			missed: []string{"172.16.0.0/11", "2001:db8::1/64"},
		},
		{
			name: "mac", pointer: "#/$defs/mac",
			parser: func(s string) error { return errOf(parseMAC(s)) },
			valid: []string{"02:42:ac:11:00:02", "02-42-AC-11-00-02", "0242.ac11.0002", "fe:ff:ff:ff:ff:ff",
				"00:00:00:00:00:01"},
			invalid: []string{"02:42:ac:11:00", "zz:42:ac:11:00:02", "00:00:00:00:00:00", "01:00:5e:00:00:01",
				"0000.0000.0000", "02:42-ac:11:00:02", "2:42:ac:11:0:2", "02:42:ac:11:00:02:03:04",
				"0342.ac11.0002", "02:42:ac:11:00:02 "},
		},
		{
			name: "ifname", pointer: "#/$defs/ifname",
			parser: checkIfname,
			gap:    func(s string) bool { return utf8.RuneCountInString(s) <= 15 && len(s) > 15 },
			valid:  []string{"eth0", "docker0", "br-5d3e0c8a4b21", "veth-c2", "eth0.100", "a", "123456789012345", "x!y", "é"},
			invalid: []string{"", ".", "..", "lo", "all", "default", "eth0/1", "eth 1", "eth0:1", "1234567890123456", "a\tb",
				"a\u00a0b", "a\u3000b", "a\u0085b", "a\x7fb"},
			missed: []string{"éééééééé"},
		},
		{
			name: "route", pointer: "#/$defs/route",
			parser: func(s string) error {
				r, err := parseRoute(s)
				if err == nil && r.Via.Is6() && r.Via.IsLinkLocalUnicast() && r.Dev == "" {
					err = fmt.Errorf("a link-local gateway needs dev") // Validate's rule
				}
				return err
			},
			valid: []string{"default via 172.17.0.1", "default via 2001:db8::1", "10.0.0.0/8 via 198.51.100.7 metric 100",
				"192.0.2.0/24 dev eth0", "2001:db8:99::/48 via fe80::1 dev eth0", "10.9.1.2/16 via 10.0.0.1",
				"10.0.0.1 dev eth0", "0.0.0.0/0 dev eth0", "::/0 dev eth0", "10.0.0.0/8 metric 5 dev eth0 via 10.0.0.1",
				"  10.0.0.0/8   via 10.0.0.1\n", "10.0.0.0/8 dev via via 10.0.0.1", "10.0.0.0/8 via 10.0.0.1 metric 4294967295",
				"10.0.0.0/8 via 10.0.0.1 metric 0004294967295", "::ffff:0:0/96 via ::ffff:10.0.0.1", "10.0.0.0/8 dev lo"},
			invalid: []string{"", "default gw 172.17.0.1", "10.0.0.0/8", "10.0.0.0/8 via 172.17.0.1 via 172.17.0.2",
				"10.300.0.0/8 via 172.17.0.1", "10.0.0.0/8 via 172.17.0.1 metric lots", "10.0.0.0/8 via",
				"default dev eth0", "10.0.0.0/8 via 2001:db8::1", "2001:db8:1::/48 via 172.17.0.1",
				"2001:db8::/32 via fe80::1", "10.0.0.0/8 via 0.0.0.0", "10.0.0.0/8 via 127.0.0.1",
				"10.0.0.0/8 via 224.0.0.1", "::/0 via ::1", "::/0 via ::", "::/0 via ff02::1",
				"10.0.0.0/8 dev eth0 dev eth1", "10.0.0.0/8 metric 1 metric 2 dev eth0", "10.0.0.0/8 via 10.0.0.1 metric 4294967296",
				"10.0.0.0/8 via 10.0.0.1 metric -1", "10.0.0.0/8 dev 1234567890123456", "10.0.0.0/8 via 10.0.0.1 onlink",
				"default via 10.0.0.1 dev", "10.0.0.0/33 dev eth0"},
		},
		{
			name: "publish", pointer: "#/$defs/publish",
			parser: func(s string) error { return errOf(parsePublish(s)) },
			valid: []string{"8000:80", "8000:80/udp", "8000:80/tcp", "127.0.0.1:8000:80", "[::1]:8000:80/udp",
				"[127.0.0.1]:1:65535", ":8000:80", "[]:8000:80", "08000:0080"},
			invalid: []string{"80", "8000", "8000:http", "8000:80/sctp", "8000:80/", "0:80", "80:0", "65536:80",
				"300.1.1.1:8000:80", "::1:8000:80", "[::1]8000:80", "[::1:8000:80", "a:b:c:d", "8000:+80",
				"[fe80::1%eth0]:8000:80", "1.2.3.4:8000:80:90"},
		},
		{
			name: "dnat target", pointer: "#/$defs/natRule/properties/dnat/properties/to",
			parser: func(s string) error {
				_, _, err := parseDNATTarget(s)
				return err
			},
			gap: func(s string) bool { return descending(s[strings.LastIndex(s, ":")+1:]) },
			valid: []string{"10.0.0.5", "10.0.0.5:80", "10.0.0.5:80-90", "2001:db8::5", "[2001:db8::5]:80",
				"[2001:db8::5]", "[10.0.0.5]:80", "[2001:db8::5]:80-80"},
			invalid: []string{"10.0.0.5:", "10.0.0.5:0", "10.0.0.5:65536", "10.0.0.5:80-", "10.0.0.5:-80",
				"[2001:db8::5]:", "[2001:db8::5]x", "2001:db8::5:80x", "host:80", "10.0.0.5:80:90", "[10.0.0.5:80"},
			missed: []string{"10.0.0.5:90-80"},
		},
		{
			name: "port range", pointer: "#/$defs/portRange",
			parser:  func(s string) error { return errOf(parsePortRange(s)) },
			gap:     descending,
			valid:   []string{"80", "1", "65535", "8000-8010", "080", "80-80"},
			invalid: []string{"0", "65536", "", "-", "80-", "-80", "http", "+80", "80-90-100", "0-80"},
			missed:  []string{"2000-1000"},
		},
		{
			name: "sysctl key", pointer: "#/$defs/sysctls/propertyNames",
			parser: checkSysctlKey,
			valid: []string{"net.ipv4.ip_forward", "net/ipv4/conf/eth0.100/forwarding", "net.ipv4.conf.all.rp_filter",
				"net.bridge.bridge-nf-call-iptables", "net.a/b"},
			invalid: []string{"kernel.pid_max", "vm.swappiness", "net", "net.", "net..ipv4", "net/", "net//a",
				"net/a..b", "net.ipv4 .x", "netfoo", "net.ipv4.", "/net/ipv4"},
		},
		{
			name: "tcp target", pointer: "#/$defs/check/properties/tcp",
			parser: checkTCP,
			valid: []string{"172.17.0.2:80", "[2001:db8::2]:80", "web:80", "[web]:80", "c4:65535", "10.0.0.1:080",
				"10.0.0.1:+80"},
			invalid: []string{"10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "2001:db8::2:80", "web", ":80",
				"-web:80", "web:http", "[fe80::1%eth0]:80"},
		},
		{
			name: "http target", pointer: "#/$defs/check/properties/http",
			parser: func(s string) error {
				if err := checkHTTP(s); err != nil {
					return err
				}
				// Validate: the host is an address or a namespace's name.
				u, _ := url.Parse(s)
				if _, err := netip.ParseAddr(u.Hostname()); err != nil && !namespaceRE.MatchString(u.Hostname()) {
					return fmt.Errorf("unknown namespace %q", u.Hostname())
				}
				return nil
			},
			valid: []string{"http://172.17.0.2:80/", "http://172.17.0.2", "http://[2001:db8:1::10]:8080/index.html",
				"http://c4/", "http://web:80/a?b=c#d", "http://u:p@web/"},
			invalid: []string{"https://10.0.0.1/", "http://", "http:///x", "ftp://web/", "HTTP://web/", "http://a b/",
				"http://web:port/", "http://a~b/", "web/"},
		},
		{
			name: "rate", pointer: "#/$defs/rate",
			parser: func(s string) error { return errOf(parseRate(s)) },
			gap: func(s string) bool { // below 8kbit or above 100gbit: a number in a string
				m := rateRE.FindStringSubmatch(s)
				return m != nil && rateUnits[strings.ToLower(m[2])] != 0
			},
			valid:   []string{"10mbit", "512kbit", "1gbit", "1.5mbit", "100kbps", "8kbit", "10 mbit", "10Mbit"},
			invalid: []string{"", "10mb", "fast", "10", "mbit", "-1mbit", "1,5mbit"},
			missed:  []string{"1kbit", "200gbit", "0mbit", "1tbit"},
		},
		{
			name: "delay", pointer: "#/$defs/delay",
			parser: func(s string) error { return errOf(parseDelay(s)) },
			gap: func(s string) bool { // out of range, or finer than a microsecond: a number in a string
				_, err := time.ParseDuration(s)
				return err == nil
			},
			valid:   []string{"20ms", "1.5ms", "100us", "1s", "1m", "1m0s", "250µs"},
			invalid: []string{"", "soon", "20", "ms", "20 ms", "-5ms"},
			missed:  []string{"0ms", "2m", "1500ns", "1h"},
		},
		{
			name: "percent", pointer: "#/$defs/percent",
			parser:  func(s string) error { return errOf(parsePercent(s)) },
			gap:     func(s string) bool { return percentRE.MatchString(s) }, // 0% or above 100%: a number in a string
			valid:   []string{"1%", "0.5%", "100%", "1 %"},
			invalid: []string{"", "1", "x%", "%", "-1%", ".5%"},
			missed:  []string{"0%", "101%", "0.0%"},
		},
		{
			name: "range", pointer: "#/$defs/rangeName",
			parser: func(s string) error {
				_, _, _, _, ok, err := parseRange(s)
				if err == nil && !ok {
					err = fmt.Errorf("no range")
				}
				return err
			},
			gap:     func(s string) bool { return rangeRE.MatchString(s) }, // backwards or too long: numbers in a string
			valid:   []string{"h[1-100]", "r[1-4]-edge", "[1-2]", "h[0-0]"},
			invalid: []string{"", "h", "h[x]", "h[1-2][3-4]", "h[1-]", "h[-1-2]"},
			missed:  []string{"h[5-1]", "h[1-20000]"},
		},
		{
			name: "ping target", pointer: "#/$defs/check/properties/ping",
			parser:  checkPing,
			valid:   []string{"10.0.0.1", "2001:db8::1", "web", "c4", "10.0.0.300"},
			invalid: []string{"", "-web", "fe80::1%eth0", "a b", "web/1", "10.0.0.1/32"},
		},
		{
			name: "run command", pointer: "#/$defs/command",
			parser: func(s string) error {
				if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "\x00\n\r") {
					return fmt.Errorf("bad command")
				}
				return nil
			},
			valid:   []string{"python3 -m http.server 80", "true", " sleep 1 "},
			invalid: []string{"", " ", "\t", "\u3000", "echo one\necho two", "a\rb", "a\x00b"},
		},
		{
			name: "lab name", pointer: "#/$defs/labName",
			parser: func(s string) error {
				if !labNameRE.MatchString(s) {
					return fmt.Errorf("bad lab name")
				}
				return nil
			},
			valid:   []string{"docker-bridge", "a", "0", "abcdefghijklmnopqrstuvwx", "x-"},
			invalid: []string{"", "Docker_Bridge", "-a", "abcdefghijklmnopqrstuvwxy", "a.b"},
		},
		{
			name: "namespace name", pointer: "#/$defs/namespaceName",
			parser: func(s string) error {
				if !namespaceRE.MatchString(s) {
					return fmt.Errorf("bad namespace name")
				}
				return nil
			},
			valid:   []string{"web", "Web_1.a-b", "1", "host", strings.Repeat("a", 32)},
			invalid: []string{"", "../x", "-web", ".web", strings.Repeat("a", 33), "a b", "a:b"},
		},
	}
}

// TestSchemaValues checks each kind of value on hand-picked values: both accept
// the valid ones, both refuse the invalid ones, and the missed ones are refused by
// the parser only, for a reason the case's gap names.
func TestSchemaValues(t *testing.T) {
	for _, vc := range valueCases() {
		t.Run(vc.name, func(t *testing.T) {
			sch := compileSchema(t, vc.pointer)
			for _, s := range vc.valid {
				if err := vc.parser(s); err != nil {
					t.Errorf("valid %q: the parser refuses it: %v", s, err)
				}
				if err := sch.Validate(s); err != nil {
					t.Errorf("valid %q: the schema refuses it: %v", s, err)
				}
			}
			for _, s := range vc.invalid {
				if vc.parser(s) == nil {
					t.Errorf("invalid %q: the parser accepts it", s)
				}
				if sch.Validate(s) == nil {
					t.Errorf("invalid %q: the schema accepts it", s)
				}
			}
			for _, s := range vc.missed {
				if vc.parser(s) == nil {
					t.Errorf("missed %q: the parser accepts it", s)
				}
				if sch.Validate(s) != nil {
					t.Errorf("missed %q: the schema refuses it now; move it to invalid", s)
				}
				if vc.gap == nil || !vc.gap(s) {
					t.Errorf("missed %q: not a documented gap of the schema", s)
				}
			}
		})
	}
}

// TestSchemaValuesGenerated compares the schema with the parser on generated
// addresses, MACs, routes, publish strings and interface names: the schema never
// refuses what the parser accepts, and accepts what the parser refuses only where
// the case says the schema cannot tell.
func TestSchemaValuesGenerated(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	rng := rand.New(rand.NewPCG(1, 2))
	gens := map[string]func() string{
		"address":     func() string { return genAddr(rng) + "/" + genBits(rng) },
		"ip":          func() string { return genAddr(rng) },
		"gateway":     func() string { return genAddr(rng) },
		"subnet":      func() string { return pick(rng, genAddr(rng), genAddr(rng)+"/"+genBits(rng)) },
		"mac":         func() string { return genMAC(rng) },
		"ifname":      func() string { return genName(rng) },
		"route":       func() string { return genRoute(rng) },
		"publish":     func() string { return genPublish(rng) },
		"dnat target": func() string { return genDNAT(rng) },
		"port range":  func() string { return genPorts(rng) },
		"tcp target":  func() string { return genTCP(rng) },
	}
	for _, vc := range valueCases() {
		gen := gens[vc.name]
		if gen == nil {
			continue
		}
		t.Run(vc.name, func(t *testing.T) {
			sch := compileSchema(t, vc.pointer)
			var agree, caught, gaps int
			for range n {
				s := gen()
				perr, serr := vc.parser(s), sch.Validate(s)
				switch {
				case perr == nil && serr != nil:
					t.Errorf("%q: the parser accepts it, the schema refuses it: %v", s, serr)
				case perr != nil && serr == nil && (vc.gap == nil || !vc.gap(s)):
					t.Errorf("%q: the parser refuses it (%v), the schema accepts it", s, perr)
				case perr != nil && serr == nil:
					gaps++
				case perr != nil:
					caught++
				default:
					agree++
				}
			}
			t.Logf("%d generated: %d valid, %d refused by both, %d refused by the parser only (documented gaps)", n, agree, caught, gaps)
			if agree == 0 || caught == 0 {
				t.Errorf("the generator makes no valid or no invalid values (%d valid, %d invalid)", agree, caught)
			}
		})
	}
}

// isNetworkOrBroadcast: an IPv4 ADDRESS/LEN shorter than /31 that is its subnet's
// network or broadcast address (the schema catches /8, /16 and /24 only).
func isNetworkOrBroadcast(s string) bool {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() >= 31 {
		return false
	}
	return p.Addr() == p.Masked().Addr() || p.Addr() == broadcast(p.Masked())
}

// descending: a port range "A-B" whose ports are fine but A is above B (a schema
// cannot compare two numbers in a string).
func descending(s string) bool {
	first, last, ok := strings.Cut(s, "-")
	a, errA := parsePort(first)
	b, errB := parsePort(last)
	return ok && errA == nil && errB == nil && a > b
}

// --- Generators --------------------------------------------------------------------

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// genAddr makes an IPv4 or IPv6 address, mostly valid, often special (unspecified,
// loopback, multicast, link-local, mapped), in the spellings people use.
func genAddr(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		b := [4]byte{pick[byte](rng, 0, 10, 127, 169, 172, 192, 223, 224, 239, 240, 255, byte(rng.IntN(256)))}
		for i := 1; i < 4; i++ {
			b[i] = pick[byte](rng, 0, 1, 254, 255, byte(rng.IntN(256)))
		}
		s := netip.AddrFrom4(b).String()
		switch rng.IntN(12) {
		case 0:
			s = strings.Replace(s, ".", ".0", 1) // a leading zero
		case 1:
			s = strings.Replace(s, ".", ".256", 1)
		case 2:
			s = s[:strings.LastIndex(s, ".")]
		}
		return s
	}
	var b [16]byte
	hi := pick[uint16](rng, 0, 0x2001, 0xfe80, 0xfebf, 0xfec0, 0xff02, 0x00ff, 0xfe8, uint16(rng.Uint32()))
	b[0], b[1] = byte(hi>>8), byte(hi)
	for i := 2; i < 16; i += 2 {
		if rng.IntN(3) == 0 {
			b[i], b[i+1] = byte(rng.IntN(256)), byte(rng.IntN(256))
		}
	}
	if rng.IntN(8) == 0 {
		b[15] = 1
	}
	if rng.IntN(8) == 0 { // IPv4-mapped
		b = netip.AddrFrom4([4]byte{pick[byte](rng, 0, 10, 127, 169, 224, 239, byte(rng.IntN(256))), 254, 0, 1}).As16()
	}
	a := netip.AddrFrom16(b)
	s := a.String()
	switch rng.IntN(10) {
	case 0:
		s = a.StringExpanded()
	case 1:
		s = strings.ToUpper(s)
	case 2:
		s += ":1"
	case 3:
		s = strings.Replace(s, ":", "::", 1)
	case 4:
		s += "%eth0"
	case 5: // the last 32 bits as IPv4, "::" for the first two zero groups or not
		s = a.StringExpanded()[:30] + netip.AddrFrom4([4]byte(b[12:])).String()
		if rng.IntN(2) == 0 {
			if s = strings.Replace(s, "0000:0000:", ":", 1); strings.HasPrefix(s, ":") {
				s = ":" + s
			}
		}
	}
	return s
}

func genBits(rng *rand.Rand) string {
	return pick(rng, "0", "1", "8", "12", "16", "20", "24", "30", "31", "32", "33", "48", "64", "96", "104",
		"127", "128", "129", "08", "", fmt.Sprint(rng.IntN(130)))
}

func genMAC(rng *rand.Rand) string {
	var b [6]byte
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	if rng.IntN(4) == 0 {
		b = [6]byte{}
		b[5] = pick[byte](rng, 0, 1)
	}
	parts := make([]string, 6)
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	switch rng.IntN(8) {
	case 0:
		return strings.ToUpper(strings.Join(parts, "-"))
	case 1:
		return parts[0] + parts[1] + "." + parts[2] + parts[3] + "." + parts[4] + parts[5]
	case 2:
		return strings.Join(parts[:5], ":")
	case 3:
		return strings.Join(append(parts, "00"), ":")
	case 4:
		return strings.TrimPrefix(strings.Join(parts, ":"), "0")
	case 5:
		return strings.Join(parts[:3], ":") + "-" + strings.Join(parts[3:], "-")
	}
	return strings.Join(parts, ":")
}

func genName(rng *rand.Rand) string {
	chars := []rune("abcdefghxyz0189-_.!@é/: \t\u00a0\u3000\u0085\x7f\x00")
	n := pick(rng, 1, 2, 3, 5, 8, 14, 15, 16, 20)
	var b strings.Builder
	for range n {
		if rng.IntN(4) == 0 {
			b.WriteRune(chars[rng.IntN(len(chars))])
		} else {
			b.WriteRune(chars[rng.IntN(12)])
		}
	}
	if rng.IntN(20) == 0 {
		return pick(rng, "", ".", "..", "lo", "lo0")
	}
	return b.String()
}

func genRoute(rng *rand.Rand) string {
	dest := pick(rng, "default", "default", genAddr(rng), genAddr(rng)+"/"+genBits(rng), "10.0.0.0/8", "::/0",
		"2001:db8::/32", "0.0.0.0/0")
	words := []string{dest}
	kw := []string{"via", "dev", "metric"}
	rng.Shuffle(len(kw), func(i, j int) { kw[i], kw[j] = kw[j], kw[i] })
	for _, w := range kw[:rng.IntN(4)] {
		switch w {
		case "via":
			words = append(words, "via", pick(rng, genAddr(rng), "10.0.0.1", "2001:db8::1", "fe80::1"))
		case "dev":
			words = append(words, "dev", pick(rng, "eth0", "br-x", "lo", genName(rng)))
		case "metric":
			words = append(words, "metric", pick(rng, "0", "10", "4294967295", "4294967296", "-1", "x"))
		}
	}
	if rng.IntN(10) == 0 {
		words = append(words, pick(rng, "via", "dev", "metric", "onlink", "src"), "10.0.0.1")
	}
	if rng.IntN(10) == 0 {
		words = words[:len(words)-1]
	}
	sep := pick(rng, " ", " ", "  ", "\t")
	return strings.Join(words, sep)
}

func genPort(rng *rand.Rand) string {
	return pick(rng, "80", "8000", "1", "65535", "0", "65536", "0080", "+80", "", "x", fmt.Sprint(rng.IntN(70000)))
}

func genPublish(rng *rand.Rand) string {
	s := genPort(rng) + ":" + genPort(rng)
	switch rng.IntN(5) {
	case 0:
		s = genAddr(rng) + ":" + s
	case 1:
		s = "[" + genAddr(rng) + "]:" + s
	case 2:
		s = ":" + s
	}
	if rng.IntN(3) == 0 {
		s += "/" + pick(rng, "tcp", "udp", "sctp", "")
	}
	return s
}

func genPorts(rng *rand.Rand) string {
	if rng.IntN(3) == 0 {
		return genPort(rng) + "-" + genPort(rng)
	}
	return genPort(rng)
}

func genDNAT(rng *rand.Rand) string {
	a := genAddr(rng)
	switch rng.IntN(4) {
	case 0:
		return a
	case 1:
		return a + ":" + genPorts(rng)
	case 2:
		return "[" + a + "]"
	}
	return "[" + a + "]:" + genPorts(rng)
}

func genTCP(rng *rand.Rand) string {
	host := pick(rng, genAddr(rng), "web", "c-4.x", "-web", "a b", "")
	if rng.IntN(2) == 0 || strings.Contains(host, ":") && rng.IntN(4) > 0 {
		host = "[" + host + "]"
	}
	return host + ":" + genPort(rng)
}

// TestSchemaIsSelfContained: the schema's $id is no real host, and every $ref
// points inside the file, so that an editor never fetches anything.
func TestSchemaIsSelfContained(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	root := doc.(map[string]any)
	if root["$id"] != schemaID {
		t.Errorf("$id = %v, want %s", root["$id"], schemaID)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok && !strings.HasPrefix(r, "#/$defs/") {
				t.Errorf("%s: $ref %q leaves the file", path, r)
			}
			// Every property of a mapping the schema defines (those that refuse
			// unknown keys; other "properties" are conditions) documents itself: an
			// editor shows it as the tooltip.
			if props, ok := v["properties"].(map[string]any); ok && v["additionalProperties"] == false {
				for name, p := range props {
					p, _ := p.(map[string]any)
					if _, isRef := p["$ref"]; !isRef && (p["title"] == nil || p["description"] == nil) {
						t.Errorf("%s/properties/%s: no title or description", path, name)
					}
				}
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(path+"/"+k, v[k])
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s/%d", path, i), x)
			}
		}
	}
	walk("#", doc)
	defs := root["$defs"].(map[string]any)
	for name, def := range defs {
		def := def.(map[string]any)
		if def["title"] == nil || def["description"] == nil {
			t.Errorf("$defs/%s: no title or description", name)
		}
	}
}
