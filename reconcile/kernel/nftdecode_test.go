package kernel

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// sameTyped compares typed values of the model (netip values by ==).
var sameTyped = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// roundTrip compiles a rule of an inet table, decodes the expressions and
// checks that the decoded rule is the rule (its comment aside, which nft keeps
// apart), and that it compiles to the same expressions.
func roundTrip(t *testing.T, where string, rule *r.Rule) { roundTripIn(t, 0, where, rule) }

// roundTripIn is roundTrip for a table whose family implies nfproto.
func roundTripIn(t *testing.T, nfproto byte, where string, rule *r.Rule) {
	t.Helper()
	exprs, err := compileIn(nfproto, rule)
	if err != nil {
		t.Errorf("%s: compile %s: %v", where, rule.Text(), err)
		return
	}
	got, err := decodeIn(nfproto, exprs)
	if err != nil {
		t.Errorf("%s: decode %s: %v", where, rule.Text(), err)
		return
	}
	want := *rule
	want.Comment = ""
	if diff := cmp.Diff(&want, got, sameTyped...); diff != "" {
		t.Errorf("%s: %s decodes otherwise (-want +got):\n%s", where, rule.Text(), diff)
	}
	got.Comment = rule.Comment
	if !writesAsFound(nfproto, got, exprs) {
		t.Errorf("%s: %s decoded compiles to other expressions", where, rule.Text())
	}
}

// TestEveryLabRuleDecodesToItself: every rule of every shipped lab, compiled to
// expressions and decoded, is the same typed rule, so that a table netlab wrote
// reads back as the file's.
func TestEveryLabRuleDecodesToItself(t *testing.T) {
	files, _ := filepath.Glob("../../labs/*.yaml")
	more, _ := filepath.Glob("../../tests/testdata/*.yaml")
	n, docker := 0, 0
	for _, file := range append(files, more...) {
		desired := harness.Desired(t, file)
		for ns, table := range desired.Tables {
			for _, c := range table.Chains {
				for _, rule := range c.Rules {
					roundTrip(t, fmt.Sprintf("%s %s %s", filepath.Base(file), ns, c.Name), rule)
					n++
				}
			}
		}
		for k, table := range desired.DockerTables { // Docker 29's tables (nftables layout)
			for _, c := range table.Chains {
				for _, rule := range c.Rules {
					roundTripIn(t, nfprotoOf(k.Family), fmt.Sprintf("%s %s %s", filepath.Base(file), k, c.Name), rule)
					docker++
				}
			}
		}
	}
	if n < 20 || docker < 20 {
		t.Fatalf("only %d rules, %d of them in Docker's tables", n+docker, docker)
	}
}

// matchExamples has examples of every kind of match, by type name.
var matchExamples = map[string][]r.Match{
	"IIFName": {r.IIFName{Name: "docker0"}, r.IIFName{Name: "eth0", Neg: true}},
	"OIFName": {r.OIFName{Name: "docker0"}, r.OIFName{Name: "eth0", Neg: true}},
	"AddrMatch": {r.AddrMatch{Dir: r.Src, Prefix: netip.MustParsePrefix("172.17.0.0/16")},
		r.AddrMatch{Dir: r.Dst, Prefix: netip.MustParsePrefix("10.1.2.3/32"), Neg: true},
		r.AddrMatch{Dir: r.Src, Prefix: netip.MustParsePrefix("10.64.0.0/10")},
		r.AddrMatch{Dir: r.Dst, Prefix: netip.MustParsePrefix("2001:db8::/64")},
		r.AddrMatch{Dir: r.Src, Prefix: netip.MustParsePrefix("2001:db8::2/128")}},
	"L4ProtoMatch": {r.L4ProtoMatch{Proto: r.ProtoICMP}, r.L4ProtoMatch{Proto: r.ProtoUDP, Neg: true}, r.L4ProtoMatch{Proto: r.ProtoICMPv6}},
	"PortMatch": {r.PortMatch{Proto: r.ProtoTCP, Dir: r.Dst, First: 80, Last: 80},
		r.PortMatch{Proto: r.ProtoUDP, Dir: r.Src, First: 5000, Last: 5010, Neg: true}},
	"CtStateMatch": {r.CtStateMatch{States: r.CtEstablished | r.CtRelated}, r.CtStateMatch{States: r.CtNew | r.CtInvalid | r.CtUntracked, Neg: true}},
	"FibLocal":     {r.FibLocal{Dir: r.Dst}, r.FibLocal{Dir: r.Src, Neg: true}},
	"SetLookup": {r.SetLookup{Fields: []r.Field{{Proto: r.ProtoTCP, Dir: r.Dst}}, Set: "ports"},
		r.SetLookup{Fields: []r.Field{{Dir: r.Src}, {Dir: r.Dst}, {Proto: r.ProtoUDP, Dir: r.Dst}}, Set: "hairpin"}},
}

// verdictExamples has an example rule of every verdict.
var verdictExamples = map[r.Verdict][]r.Rule{
	r.VerdictAccept:     {{}},
	r.VerdictDrop:       {{}},
	r.VerdictReject:     {{}},
	r.VerdictJump:       {{Chain: "mine"}},
	r.VerdictReturn:     {{Match: []r.Match{r.IIFName{Name: "docker0"}}}},
	r.VerdictMasquerade: {{}},
	r.VerdictSNAT: {{NAT: r.NATTarget{Addr: netip.MustParseAddr("198.51.100.7")}},
		{NAT: r.NATTarget{Addr: netip.MustParseAddr("2001:db8::2"), First: 80, Last: 80}}},
	r.VerdictVmap: {{Vmap: r.Vmap{Out: true, Map: "filter-forward-in-jumps"}, NoCounter: true},
		{Match: []r.Match{r.IIFName{Name: "docker0", Neg: true}}, Vmap: r.Vmap{Map: "nat-postrouting-out-jumps"}}},
	r.VerdictDNAT: {{NAT: r.NATTarget{Addr: netip.MustParseAddr("172.17.0.2"), First: 80, Last: 90}},
		{Match: []r.Match{r.SetLookup{Fields: []r.Field{{Proto: r.ProtoTCP, Dir: r.Dst}}, Set: "ports"}},
			NAT: r.NATTarget{Map: "dnat", MapProto: r.ProtoTCP}}},
}

// matchKinds lists the types of package reconcile that are matches (those with
// an isMatch method), from its source.
func matchKinds(t *testing.T) []string {
	files, _ := filepath.Glob("../*.go")
	var kinds []string
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == "isMatch" && fn.Recv != nil {
				if id, ok := fn.Recv.List[0].Type.(*ast.Ident); ok {
					kinds = append(kinds, id.Name)
				}
			}
		}
	}
	if len(kinds) < 8 {
		t.Fatalf("found only the match kinds %v", kinds)
	}
	return kinds
}

// TestEveryKindHasACompilerAndADecoder: each kind of match and each verdict of
// the model compiles to expressions and decodes back to itself; a kind added to
// the model without its compiler and decoder cases (and an example here) fails.
func TestEveryKindHasACompilerAndADecoder(t *testing.T) {
	for _, kind := range matchKinds(t) {
		examples := matchExamples[kind]
		if len(examples) == 0 {
			t.Errorf("no example of the match %s: add its compiler and decoder cases, and examples here", kind)
		}
		for _, m := range examples {
			if got := fmt.Sprintf("%T", m); got != "reconcile."+kind {
				t.Errorf("example %v of %s is a %s", m, kind, got)
			}
			roundTrip(t, kind, &r.Rule{Match: []r.Match{m}, Verdict: r.VerdictAccept, Comment: "x"})
		}
	}
	for v := r.Verdict(1); !strings.HasPrefix(v.Text(), "verdict "); v++ {
		examples := verdictExamples[v]
		if len(examples) == 0 {
			t.Errorf("no example of the verdict %s: add its compiler and decoder cases, and examples here", v.Text())
		}
		for _, rule := range examples {
			rule.Verdict = v
			roundTrip(t, v.Text(), &rule)
		}
	}
}

// TestDecodedRulesReadAsBefore: the text of decoded rules is nft's, as the plan
// showed it before the model was typed.
func TestDecodedRulesReadAsBefore(t *testing.T) {
	for _, c := range []struct {
		rule *r.Rule
		want string
	}{
		{&r.Rule{Match: []r.Match{r.OIFName{Name: "docker0"}, r.CtStateMatch{States: r.CtRelated | r.CtEstablished}}, Verdict: r.VerdictAccept},
			`oifname "docker0" ct state established,related counter accept`},
		{&r.Rule{Match: []r.Match{r.FibLocal{Dir: r.Dst}, r.SetLookup{Fields: []r.Field{{Proto: r.ProtoTCP, Dir: r.Dst}}, Set: "docker0-tcp-ports"}},
			Verdict: r.VerdictDNAT, NAT: r.NATTarget{Map: "docker0-tcp-dnat", MapProto: r.ProtoTCP}},
			`fib daddr type local tcp dport @docker0-tcp-ports counter dnat ip to tcp dport map @docker0-tcp-dnat`},
		{&r.Rule{Match: []r.Match{r.AddrMatch{Dir: r.Dst, Prefix: netip.MustParsePrefix("2001:db8::1/128")}, r.PortMatch{Proto: r.ProtoTCP, Dir: r.Dst, First: 8000, Last: 8000}},
			Verdict: r.VerdictDNAT, NAT: r.NATTarget{Addr: netip.MustParseAddr("2001:db8::2"), First: 80, Last: 80}},
			`ip6 daddr 2001:db8::1 tcp dport 8000 counter dnat ip6 to [2001:db8::2]:80`},
		{&r.Rule{Match: []r.Match{r.AddrMatch{Dir: r.Src, Prefix: netip.MustParsePrefix("10.64.0.0/10"), Neg: true}, r.L4ProtoMatch{Proto: r.ProtoICMP}},
			Verdict: r.VerdictSNAT, NAT: r.NATTarget{Addr: netip.MustParseAddr("198.51.100.7"), First: 1000, Last: 2000}},
			`ip saddr != 10.64.0.0/10 meta l4proto icmp counter snat ip to 198.51.100.7:1000-2000`},
	} {
		exprs, err := compileRule(c.rule)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRule(exprs)
		if err != nil {
			t.Fatalf("%s: %v", c.want, err)
		}
		if got.Text() != c.want {
			t.Errorf("got  %s\nwant %s", got.Text(), c.want)
		}
	}
}

// TestRemovedRulesShowAsRules: a rule of the lab's table that the file no
// longer has, or that was added by hand, shows in the plan as the rule it is
// (as the kernel holds it), with its handle.
func TestRemovedRulesShowAsRules(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, natLab)
	up(t, d, desired)
	sb.mustRun("host", "nft", `insert rule inet netlab-nat forward iifname "eth9" ip saddr 10.0.0.0/8 tcp dport 22 counter drop comment "mine"`)

	// The file without the last rule of each chain of the host's table.
	edited := desired.Clone()
	old := desired.Tables["host"]
	table := &r.Table{NS: old.NS, Name: old.Name, Sets: old.Sets}
	var removed []string
	for _, c := range old.Chains {
		copied := *c
		if n := len(c.Rules); n > 0 {
			copied.Rules = c.Rules[:n-1]
			removed = append(removed, "- "+c.Name+": "+c.Rules[n-1].Text()+" (handle ")
		}
		table.Chains = append(table.Chains, &copied)
	}
	edited.Tables["host"] = table
	plan, err := r.MakePlan(t.Context(), d, edited)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	plan.WriteText(&b)
	want := append(removed, `- forward: iifname "eth9" ip saddr 10.0.0.0/8 tcp dport 22 counter drop comment "mine" (handle `)
	for _, w := range want {
		if !strings.Contains(b.String(), w) {
			t.Errorf("plan does not show %q:\n%s", w, b.String())
		}
	}
	if strings.Contains(b.String(), "…") || strings.Contains(b.String(), "other than the file") {
		t.Errorf("plan shows a rule it could not decode:\n%s", b.String())
	}
}
