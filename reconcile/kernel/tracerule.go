package kernel

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// How a trace names the rules a probe met: by handle, decoded as netlab writes
// rules, or generically for a rule of someone else.

// hit is a trace event as a rule met.
func (a *traceAnalysis) hit(s *step) reconcile.TraceHit {
	e := s.ev
	hit := reconcile.TraceHit{
		Namespace: a.name(s.ns), Hook: s.hook, Family: familyName(nftables.TableFamily(e.family)),
		Table: e.table, Chain: e.chain, Handle: e.handle, Owner: a.owner(e.table),
	}
	if e.typ == unix.NFT_TRACETYPE_POLICY {
		hit.Handle = 0
		hit.Verdict = verdictText(int32(e.policy), "")
		if !e.hasPol {
			hit.Verdict = verdictText(e.verdict, e.target)
		}
		hit.Rule = "policy " + hit.Verdict
		return hit
	}
	hit.Verdict = verdictText(e.verdict, e.target)
	hit.Rule = a.rule(s).text
	return hit
}

// owner says whose a table is.
func (a *traceAnalysis) owner(table string) string {
	if table == reconcile.TableName(a.spec.Lab) {
		return "netlab, lab " + a.spec.Lab
	}
	if lab, ok := strings.CutPrefix(table, "netlab-"); ok {
		return "netlab, lab " + lab
	}
	return "not netlab's"
}

// hook finds the hook of an event's chain (a base chain's; a regular chain
// jumped to says "" and takes its caller's).
func (a *traceAnalysis) hook(ns string, e traceEvent) string {
	if a.hooks == nil {
		a.hooks = map[ruleKey]string{}
	}
	k := ruleKey{ns: ns, table: e.table, chain: e.chain, family: e.family}
	if h, ok := a.hooks[k]; ok {
		return h
	}
	conn, done, err := a.d.nftConn(ns)
	if err == nil {
		defer done()
		chains, err := conn.ListChainsOfTableFamily(nftables.TableFamily(e.family))
		if err == nil {
			for _, c := range chains {
				if c.Table.Name == e.table && c.Hooknum != nil {
					a.hooks[ruleKey{ns: ns, table: e.table, chain: c.Name, family: e.family}] = string(hookOf(c.Hooknum))
				}
			}
		}
	}
	if _, ok := a.hooks[k]; !ok {
		a.hooks[k] = "chain"
	}
	return a.hooks[k]
}

// rule finds the text of the rule an event names, by its handle: netlab's
// typed decoder where it can read the rule (any table), a generic rendering
// of the expressions where not.
func (a *traceAnalysis) rule(s *step) ruleInfo {
	e := s.ev
	if e.typ != unix.NFT_TRACETYPE_RULE || e.handle == 0 {
		return ruleInfo{}
	}
	k := ruleKey{ns: s.ns, table: e.table, chain: e.chain, family: e.family, handle: e.handle}
	if r, ok := a.rules[k]; ok {
		return r
	}
	info := ruleInfo{text: fmt.Sprintf("rule handle %d", e.handle)}
	conn, done, err := a.d.nftConn(s.ns)
	if err == nil {
		defer done()
		table := &nftables.Table{Name: e.table, Family: nftables.TableFamily(e.family)}
		rules, err := conn.GetRules(table, &nftables.Chain{Name: e.chain, Table: table})
		if err == nil {
			for _, r := range rules {
				if r.Handle == e.handle {
					info = describeRule(r, nftables.TableFamily(e.family))
				}
			}
		}
	}
	a.rules[k] = info
	return info
}

// describeRule is a rule's text, and whether it translates addresses.
func describeRule(r *nftables.Rule, family nftables.TableFamily) ruleInfo {
	var info ruleInfo
	// A table of family ip or ip6 needs no protocol check where an inet one
	// does: the decoder is told the family's.
	nfproto := nfprotoOf(familyName(family))
	if rule, err := decodeIn(nfproto, r.Exprs); err == nil {
		info.text = rule.StatementIn(familyOf(nfproto))
	} else {
		info.text = genericRule(r.Exprs)
	}
	if note := commentOf(r.UserData); note != "" {
		info.text += fmt.Sprintf(" comment %q", note)
	}
	for _, e := range r.Exprs {
		switch x := e.(type) {
		case *expr.NAT:
			info.nat = map[expr.NATType]string{expr.NATTypeDestNAT: "dnat", expr.NATTypeSourceNAT: "snat"}[x.Type]
		case *expr.Masq:
			info.nat = "masquerade"
		case *expr.Redir:
			info.nat = "redirect"
		}
	}
	return info
}

// genericRule renders expressions netlab's decoder does not read (another
// tool's rules), one bracket per expression, as `nft --debug=netlink` does.
func genericRule(exprs []expr.Any) string {
	var parts []string
	for _, e := range exprs {
		var s string
		switch x := e.(type) {
		case *expr.Meta:
			s = fmt.Sprintf("meta %s", metaName(x.Key))
		case *expr.Cmp:
			s = fmt.Sprintf("cmp %s 0x%x", map[expr.CmpOp]string{expr.CmpOpEq: "eq", expr.CmpOpNeq: "neq", expr.CmpOpLt: "lt", expr.CmpOpLte: "lte", expr.CmpOpGt: "gt", expr.CmpOpGte: "gte"}[x.Op], x.Data)
		case *expr.Payload:
			s = fmt.Sprintf("payload %s +%d/%d", map[expr.PayloadBase]string{expr.PayloadBaseLLHeader: "link", expr.PayloadBaseNetworkHeader: "network", expr.PayloadBaseTransportHeader: "transport"}[x.Base], x.Offset, x.Len)
		case *expr.Verdict:
			s = verdictText(int32(x.Kind), x.Chain)
		case *expr.Counter:
			s = "counter"
		case *expr.Lookup:
			s = "lookup @" + x.SetName
		case *expr.Ct:
			s = fmt.Sprintf("ct key %d", x.Key)
		case *expr.NAT:
			s = map[expr.NATType]string{expr.NATTypeDestNAT: "dnat", expr.NATTypeSourceNAT: "snat"}[x.Type]
		case *expr.Masq:
			s = "masquerade"
		case *expr.Immediate:
			s = fmt.Sprintf("immediate 0x%x", x.Data)
		case *expr.Bitwise:
			s = fmt.Sprintf("bitwise & 0x%x", x.Mask)
		case *expr.Log:
			s = "log"
		case *expr.Reject:
			s = "reject"
		default:
			s = strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
		}
		parts = append(parts, "["+s+"]")
	}
	return strings.Join(parts, " ")
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyL4PROTO:
		return "l4proto"
	case expr.MetaKeyNFPROTO:
		return "nfproto"
	case expr.MetaKeyMARK:
		return "mark"
	case expr.MetaKeyIIF:
		return "iif"
	case expr.MetaKeyOIF:
		return "oif"
	}
	return fmt.Sprintf("key %d", k)
}
