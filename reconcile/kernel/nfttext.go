package kernel

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ruleText renders the expressions of a rule found in the lab's table in nft's
// syntax, as reconcile.Rule.Text does for the file's rules: a rule netlab wrote
// for an earlier version of the file reads as it did then, and a rule added by
// hand reads close to what `nft list ruleset` shows. It decodes the shapes
// netlab writes (interface names, addresses and prefixes, ports, ct state, fib,
// set lookups, NAT, verdicts); anything else is shown as "…".
func ruleText(exprs []expr.Any) string {
	var parts []string
	var loads []string // what the registers hold, in order (several for a lookup)
	var mask []byte    // the bitwise mask applied to the load, if any
	var proto string   // "ip"/"ip6" and "tcp"/"udp" checked by the rule so far
	var l4 string
	var deps []string              // the protocol checks not yet shown: nft hides those a later match implies
	natRegs := map[uint32][]byte{} // NAT targets loaded by immediates
	natMaps := map[uint32]string{} // or looked up in a map
	flushDeps := func() { parts, deps = append(parts, deps...), nil }
	for i, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			switch e.Key {
			case expr.MetaKeyIIFNAME:
				loads = []string{"iifname"}
			case expr.MetaKeyOIFNAME:
				loads = []string{"oifname"}
			case expr.MetaKeyNFPROTO:
				loads = []string{"meta nfproto"}
			case expr.MetaKeyL4PROTO:
				loads = []string{"meta l4proto"}
			default:
				loads = []string{fmt.Sprintf("meta %d", e.Key)}
			}
			mask = nil
		case *expr.Payload:
			f := payloadField(e, proto, l4)
			if e.DestRegister <= 1 || len(loads) == 0 {
				loads = []string{f}
			} else {
				loads = append(loads, f)
			}
			if strings.HasPrefix(f, "ip") || strings.HasPrefix(f, "tcp") || strings.HasPrefix(f, "udp") {
				deps = nil // implied by the field
			}
			mask = nil
		case *expr.Ct:
			loads, mask = []string{"ct state"}, nil
			if e.Key != expr.CtKeySTATE {
				loads = []string{fmt.Sprintf("ct %d", e.Key)}
			}
		case *expr.Fib:
			loads, mask = []string{"fib saddr type"}, nil
			if e.FlagDADDR {
				loads = []string{"fib daddr type"}
			}
		case *expr.Bitwise:
			mask = e.Mask
		case *expr.Cmp:
			if len(loads) == 0 {
				parts = append(parts, "…")
				continue
			}
			field := loads[0]
			op := ""
			if e.Op == expr.CmpOpNeq {
				op = "!= "
			}
			value := cmpValue(field, e.Data, mask)
			if field == "ct state" { // "any of these bits": != 0
				value, op = ctStates(mask), ""
				if e.Op == expr.CmpOpEq {
					op = "!= "
				}
			}
			text := field + " " + op + value
			switch {
			case field == "meta nfproto" && e.Op == expr.CmpOpEq:
				proto = map[string]string{"ipv4": "ip", "ipv6": "ip6"}[value]
				deps = append(deps, text)
			case field == "meta l4proto" && e.Op == expr.CmpOpEq && (value == "tcp" || value == "udp"):
				l4 = value
				deps = append(deps, text)
			default:
				flushDeps()
				parts = append(parts, text)
			}
			loads, mask = nil, nil
		case *expr.Range:
			flushDeps()
			field := "…"
			if len(loads) > 0 {
				field = loads[0]
			}
			op := ""
			if e.Op == expr.CmpOpNeq {
				op = "!= "
			}
			parts = append(parts, fmt.Sprintf("%s %s%s-%s", field, op, cmpValue(field, e.FromData, nil), cmpValue(field, e.ToData, nil)))
			loads = nil
		case *expr.Lookup:
			flushDeps()
			if e.IsDestRegSet { // a NAT map: shown with the NAT
				natMaps[e.DestRegister] = strings.Join(loads, " . ") + " map @" + e.SetName
			} else {
				parts = append(parts, strings.Join(loads, " . ")+" @"+e.SetName)
			}
			loads = nil
		case *expr.Immediate:
			natRegs[e.Register] = e.Data
		case *expr.Counter:
			flushDeps()
			parts = append(parts, "counter")
		case *expr.Verdict:
			flushDeps()
			parts = append(parts, verdictText(e))
		case *expr.Masq:
			flushDeps()
			parts = append(parts, "masquerade")
		case *expr.Reject:
			flushDeps()
			parts = append(parts, "reject")
		case *expr.NAT:
			flushDeps()
			parts = append(parts, natText(e, natRegs, natMaps))
		default:
			flushDeps()
			if i == 0 || parts[len(parts)-1] != "…" {
				parts = append(parts, "…")
			}
		}
	}
	flushDeps()
	return strings.Join(parts, " ")
}

// payloadField names a header field netlab matches, given the protocols the
// rule checked before it.
func payloadField(p *expr.Payload, proto, l4 string) string {
	switch p.Base {
	case expr.PayloadBaseNetworkHeader:
		switch {
		case proto != "ip6" && p.Offset == 12:
			return "ip saddr"
		case proto != "ip6" && p.Offset == 16:
			return "ip daddr"
		case proto == "ip6" && p.Offset == 8:
			return "ip6 saddr"
		case proto == "ip6" && p.Offset == 24:
			return "ip6 daddr"
		}
		return fmt.Sprintf("@nh,%d,%d", p.Offset*8, p.Len*8)
	case expr.PayloadBaseTransportHeader:
		if l4 == "" {
			l4 = "th"
		}
		switch p.Offset {
		case 0:
			return l4 + " sport"
		case 2:
			return l4 + " dport"
		}
		return fmt.Sprintf("@th,%d,%d", p.Offset*8, p.Len*8)
	}
	return "…"
}

// cmpValue renders the data a field is compared with.
func cmpValue(field string, data, mask []byte) string {
	switch {
	case field == "iifname" || field == "oifname":
		return `"` + strings.TrimRight(string(data), "\x00") + `"`
	case field == "meta nfproto" && len(data) == 1:
		switch data[0] {
		case unix.NFPROTO_IPV4:
			return "ipv4"
		case unix.NFPROTO_IPV6:
			return "ipv6"
		}
	case field == "meta l4proto" && len(data) == 1:
		if name, ok := map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_ICMPV6: "icmpv6"}[data[0]]; ok {
			return name
		}
	case strings.HasPrefix(field, "ip saddr") || strings.HasPrefix(field, "ip daddr") ||
		strings.HasPrefix(field, "ip6 saddr") || strings.HasPrefix(field, "ip6 daddr"):
		size := 4
		if strings.HasPrefix(field, "ip6") {
			size = 16
		}
		full := make([]byte, size)
		copy(full, data)
		addr, _ := netip.AddrFromSlice(full)
		ones := len(data) * 8
		if mask != nil {
			ones = 0
			for _, b := range mask {
				ones += bits.OnesCount8(b)
			}
		}
		if ones == size*8 {
			return addr.String()
		}
		return netip.PrefixFrom(addr, ones).String()
	case strings.HasSuffix(field, "sport") || strings.HasSuffix(field, "dport"):
		if len(data) == 2 {
			return fmt.Sprint(binary.BigEndian.Uint16(data))
		}
	case strings.HasPrefix(field, "fib") && len(data) == 4:
		if binary.NativeEndian.Uint32(data) == unix.RTN_LOCAL {
			return "local"
		}
	}
	return fmt.Sprintf("0x%x", data)
}

// ctStates names the bits of a ct state mask.
func ctStates(mask []byte) string {
	if len(mask) != 4 {
		return "…"
	}
	m := binary.NativeEndian.Uint32(mask)
	var names []string
	for _, s := range []struct {
		bit  uint32
		name string
	}{{expr.CtStateBitINVALID, "invalid"}, {expr.CtStateBitESTABLISHED, "established"}, {expr.CtStateBitRELATED, "related"},
		{expr.CtStateBitNEW, "new"}, {expr.CtStateBitUNTRACKED, "untracked"}} {
		if m&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return "…"
}

// natText renders snat/dnat with the target the rule loaded into registers.
func natText(n *expr.NAT, regs map[uint32][]byte, maps map[uint32]string) string {
	kind := "snat"
	if n.Type == expr.NATTypeDestNAT {
		kind = "dnat"
	}
	family := "ip"
	if n.Family == unix.NFPROTO_IPV6 {
		family = "ip6"
	}
	if m, ok := maps[n.RegAddrMin]; ok {
		return kind + " " + family + " to " + m // "tcp dport map @NAME"
	}
	addr, ok := netip.AddrFromSlice(regs[n.RegAddrMin])
	if !ok {
		return kind + " …"
	}
	to := addr.String()
	if port, ok := regs[n.RegProtoMin]; ok && n.RegProtoMin != 0 && len(port) == 2 {
		if addr.Is6() {
			to = "[" + to + "]"
		}
		to += fmt.Sprintf(":%d", binary.BigEndian.Uint16(port))
		if hi, ok := regs[n.RegProtoMax]; ok && n.RegProtoMax != n.RegProtoMin && len(hi) == 2 {
			to += fmt.Sprintf("-%d", binary.BigEndian.Uint16(hi))
		}
	}
	return kind + " " + family + " to " + to
}
