package kernel

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// The iptables layout in the kernel (reconcile/iptables.go): the lab's rules
// in the shared tables ip filter / ip nat, written with the expressions
// iptables-nft writes, so that iptables-save reads them as dockerd's.
//
// Ownership: every rule netlab writes there carries, in its userdata (where
// iptables-nft keeps `-m comment`, under a type of its own so that
// iptables-save does not print it), the record "netlab:LAB|created|policy":
// the lab, the tables and chains netlab created, and FORWARD's policy before
// the lab set it. Any surviving rule of the lab gives the record back, so that
// `down` removes exactly those rules and chains and puts the policy back.
// Chains of those names that netlab did not create (a live dockerd's) are a
// conflict: nothing is written beside them.

// markType is the userdata type of netlab's record (iptables-nft reads only
// its comment type; nft ignores types it does not know).
const markType userdata.Type = 0x7e

type iptRecord struct {
	lab     string
	created []string // "filter", "nat", "filter/FORWARD", ...
	policy  string   // FORWARD's policy before: "ACCEPT", "DROP"; "" when netlab created it
}

func (r iptRecord) bytes() []byte {
	return userdata.AppendString(nil, markType, "netlab:"+r.lab+"|"+strings.Join(r.created, ",")+"|"+r.policy)
}

func recordOf(ud []byte) (iptRecord, bool) {
	s, ok := userdata.GetString(ud, markType)
	if !ok || !strings.HasPrefix(s, "netlab:") {
		return iptRecord{}, false
	}
	parts := strings.SplitN(strings.TrimPrefix(s, "netlab:"), "|", 3)
	if len(parts) != 3 {
		return iptRecord{}, false
	}
	r := iptRecord{lab: parts[0], policy: parts[2]}
	if parts[1] != "" {
		r.created = strings.Split(parts[1], ",")
	}
	return r, true
}

// iptKernel is what ip filter / ip nat hold.
type iptKernel struct {
	tables map[string]*nftables.Table
	chains map[string]*nftables.Chain // "filter/FORWARD"
	rules  map[string][]*nftables.Rule
}

func (d *Driver) readIptables(conn *nftables.Conn) (*iptKernel, error) {
	k := &iptKernel{tables: map[string]*nftables.Table{}, chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{}}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if t.Name == "filter" || t.Name == "nat" {
			k.tables[t.Name] = t
		}
	}
	if len(k.tables) == 0 {
		return k, nil
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if k.tables[c.Table.Name] == nil {
			continue
		}
		key := c.Table.Name + "/" + c.Name
		k.chains[key] = c
		if k.rules[key], err = conn.GetRules(c.Table, c); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// record finds the lab's record on any of its rules.
func (k *iptKernel) record(lab string) (iptRecord, bool) {
	for _, rules := range k.rules {
		for _, r := range rules {
			if rec, ok := recordOf(r.UserData); ok && rec.lab == lab {
				return rec, true
			}
		}
	}
	return iptRecord{}, false
}

func ours(r *nftables.Rule, lab string) bool {
	rec, ok := recordOf(r.UserData)
	return ok && rec.lab == lab
}

// compileXT compiles a rule with iptables-nft's encoding.
func compileXT(r *reconcile.Rule) ([]expr.Any, error) {
	return ruleCompiler{xt: true, nfproto: unix.NFPROTO_IPV4}.compile(r)
}

// xtMatch and xtVerdict are the matches and targets iptables-nft keeps as xt
// compat expressions.
func (c *ruleCompiler) xtMatch(m reconcile.Match) (bool, error) {
	switch m := m.(type) {
	case reconcile.CtStateMatch:
		if m.Neg {
			return true, fmt.Errorf("a negated conntrack match is not written in the iptables layout")
		}
		zero := []byte{0, 0, 0, 0}
		base := xt.ConntrackMtinfoBase{OrigSrcAddr: zero, OrigSrcMask: zero, OrigDstAddr: zero, OrigDstMask: zero,
			ReplSrcAddr: zero, ReplSrcMask: zero, ReplDstAddr: zero, ReplDstMask: zero, MatchFlags: 1}
		info := &xt.ConntrackMtinfo3{ConntrackMtinfo2: xt.ConntrackMtinfo2{ConntrackMtinfoBase: base, StateMask: uint16(m.States)}}
		c.add(&expr.Match{Name: "conntrack", Rev: 3, Info: info})
		return true, nil
	case reconcile.FibLocal:
		info := &xt.AddrTypeV1{}
		if m.Dir == reconcile.Src {
			info.Source = 1 << unix.RTN_LOCAL // XT_ADDRTYPE_LOCAL
		} else {
			info.Dest = 1 << unix.RTN_LOCAL
		}
		if m.Neg {
			return true, fmt.Errorf("a negated addrtype match is not written in the iptables layout")
		}
		c.add(&expr.Match{Name: "addrtype", Rev: 1, Info: info})
		return true, nil
	}
	return false, nil
}

func (c *ruleCompiler) xtVerdict(r *reconcile.Rule) (bool, error) {
	switch r.Verdict {
	case reconcile.VerdictMasquerade:
		zero := []byte{0, 0, 0, 0}
		c.add(&expr.Target{Name: "MASQUERADE", Rev: 0, Info: &xt.NatIPv4MultiRangeCompat{xt.NatIPv4Range{MinIP: zero, MaxIP: zero}}})
		return true, nil
	case reconcile.VerdictDNAT:
		to := r.NAT
		if !to.Addr.Is4() || to.Map != "" {
			return true, fmt.Errorf("dnat to %s is not written in the iptables layout", to.Text())
		}
		last := to.Last
		if last == 0 {
			last = to.First
		}
		c.add(&expr.Target{Name: "DNAT", Rev: 2, Info: &xt.NatRange2{NatRange: xt.NatRange{Flags: 3,
			MinIP: to.Addr.AsSlice(), MaxIP: to.Addr.AsSlice(), MinPort: to.First, MaxPort: last}}})
		return true, nil
	}
	return false, nil
}

// iptDriverChain is the library's chain of a layout chain.
func iptDriverChain(t *nftables.Table, c *reconcile.Chain, policy string) *nftables.Chain {
	ch := &nftables.Chain{Name: c.Name, Table: t}
	if c.Hook != "" {
		prio := nftables.ChainPriority(c.Priority)
		pol := nftables.ChainPolicyAccept
		if policy == "DROP" {
			pol = nftables.ChainPolicyDrop
		}
		ch.Type, ch.Hooknum, ch.Priority, ch.Policy = nftables.ChainType(c.Type), hooks[c.Hook], &prio, &pol
	}
	return ch
}

func policyOf(c *nftables.Chain) string {
	if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
		return "DROP"
	}
	return "ACCEPT"
}

// conflictIptables refuses chains of the layout that netlab did not create.
func (k *iptKernel) conflict(rec iptRecord, t *reconcile.Table) error {
	for _, c := range t.Chains {
		key := c.Table + "/" + c.Name
		if c.Hook == "" && k.chains[key] != nil && !slices.Contains(rec.created, key) {
			return fmt.Errorf("%s: table ip %s already has a chain %s that netlab did not create (a running dockerd's?). "+
				"netlab writes Docker's iptables layout only where no other tool does: stop dockerd and remove its chains "+
				"(or reboot), or use docker: {firewall: native}, netlab's own table, which coexists with anything", t.NS, c.Table, c.Name)
		}
	}
	return nil
}

// replaceIptables writes the lab's part of ip filter / ip nat in one
// transaction: its earlier rules out, the chains it needs in, its rules
// appended.
func (d *Driver) replaceIptables(t *reconcile.Table) error {
	conn, done, err := d.nftConn(t.NS)
	if err != nil {
		return err
	}
	defer done()
	k, err := d.readIptables(conn)
	if err != nil {
		return fmt.Errorf("netns %s: read ip filter / ip nat: %w", t.NS, err)
	}
	lab := strings.TrimPrefix(t.Name, "netlab-")
	rec, had := k.record(lab)
	if !had {
		rec = iptRecord{lab: lab}
	}
	if err := k.conflict(rec, t); err != nil {
		return err
	}
	for _, name := range []string{"filter", "nat"} {
		if k.tables[name] == nil {
			k.tables[name] = conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
			rec.created = append(rec.created, name)
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, c := range t.Chains {
		key := c.Table + "/" + c.Name
		table := k.tables[c.Table]
		have := k.chains[key]
		switch {
		case have == nil:
			chains[key] = conn.AddChain(iptDriverChain(table, c, c.Policy))
			rec.created = append(rec.created, key)
		case c.Hook == "":
			conn.FlushChain(have)
			chains[key] = have
		default:
			for _, r := range k.rules[key] {
				if ours(r, lab) {
					if err := conn.DelRule(r); err != nil {
						return err
					}
				}
			}
			if c.Policy != "" && policyOf(have) != c.Policy {
				if rec.policy == "" && !slices.Contains(rec.created, key) {
					rec.policy = policyOf(have)
				}
				conn.AddChain(iptDriverChain(table, c, c.Policy))
			}
			chains[key] = have
		}
	}
	if rec.policy == "" && !slices.Contains(rec.created, "filter/FORWARD") {
		rec.policy = "ACCEPT"
	}
	mark := rec.bytes()
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			exprs, err := compileXT(r)
			if err != nil {
				return fmt.Errorf("netns %s: ip %s chain %s: %w", t.NS, c.Table, c.Name, err)
			}
			conn.AddRule(&nftables.Rule{Table: k.tables[c.Table], Chain: chains[c.Table+"/"+c.Name], Exprs: exprs, UserData: mark})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("netns %s: write the iptables layout: %w", t.NS, err)
	}
	return nil
}

// deleteIptables removes exactly what the lab added: its rules, the chains and
// tables it created (when nothing else is left in them), and puts FORWARD's
// policy back.
func (d *Driver) deleteIptables(ns, name string) error {
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return err
	}
	defer done()
	k, err := d.readIptables(conn)
	if err != nil {
		return fmt.Errorf("netns %s: read ip filter / ip nat: %w", ns, err)
	}
	lab := strings.TrimPrefix(name, "netlab-")
	rec, ok := k.record(lab)
	if !ok {
		return nil
	}
	left := map[string]int{} // the rules that stay, by chain
	for key, rules := range k.rules {
		for _, r := range rules {
			if ours(r, lab) {
				if err := conn.DelRule(r); err != nil {
					return err
				}
			} else {
				left[key]++
			}
		}
	}
	// Chains: the lab's own (no hook) first, then the base chains it created.
	keys := slices.Clone(rec.created)
	slices.SortStableFunc(keys, func(a, b string) int {
		ca, cb := k.chains[a], k.chains[b]
		return boolInt(ca != nil && ca.Hooknum != nil) - boolInt(cb != nil && cb.Hooknum != nil)
	})
	gone := map[string]int{}
	for _, key := range keys {
		c := k.chains[key]
		if c == nil || left[key] > 0 {
			continue
		}
		conn.DelChain(c)
		gone[c.Table.Name]++
	}
	if c := k.chains["filter/FORWARD"]; c != nil && rec.policy != "" && !slices.Contains(rec.created, "filter/FORWARD") {
		pol := nftables.ChainPolicyAccept
		if rec.policy == "DROP" {
			pol = nftables.ChainPolicyDrop
		}
		c.Policy = &pol
		conn.AddChain(c)
	}
	for _, table := range []string{"filter", "nat"} {
		n := 0
		for key := range k.chains {
			if strings.HasPrefix(key, table+"/") {
				n++
			}
		}
		if slices.Contains(rec.created, table) && k.tables[table] != nil && gone[table] == n {
			conn.DelTable(k.tables[table])
		}
	}
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: remove the lab's iptables rules: %w", ns, err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// observeIptables reads the lab's part of ip filter / ip nat back into the
// layout's model: each rule of the lab that netlab would write with exactly
// the expressions found is the desired rule; anything else in the lab's chains
// is shown as found.
func (d *Driver) observeIptables(ns, lab string, want *reconcile.Table) (*reconcile.Table, error) {
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	k, err := d.readIptables(conn)
	if err != nil {
		return nil, fmt.Errorf("netns %s: read ip filter / ip nat: %w", ns, err)
	}
	rec, ok := k.record(lab)
	if !ok {
		return nil, nil
	}
	if want == nil {
		want = reconcile.NewIptablesTable(ns, lab)
	}
	out := &reconcile.Table{NS: ns, Name: reconcile.TableName(lab), Layout: reconcile.LayoutIptables}
	for _, wc := range want.Chains {
		key := wc.Table + "/" + wc.Name
		have := k.chains[key]
		if have == nil {
			continue
		}
		oc := &reconcile.Chain{Table: wc.Table, Name: wc.Name, Type: wc.Type, Hook: wc.Hook, Priority: wc.Priority}
		if wc.Hook != "" {
			if p := policyOf(have); p != "ACCEPT" {
				oc.Policy = p
			}
		}
		own := wc.Hook == "" && slices.Contains(rec.created, key)
		wanted := map[string][]*reconcile.Rule{}
		for _, r := range wc.Rules {
			if exprs, err := compileXT(r); err == nil {
				if key, ok := iptKey(exprs); ok {
					wanted[key] = append(wanted[key], r)
				}
			}
		}
		for _, r := range k.rules[key] {
			if !ours(r, lab) && !own {
				continue
			}
			if k, ok := iptKey(r.Exprs); ok && len(wanted[k]) > 0 {
				w := *wanted[k][0]
				wanted[k] = wanted[k][1:]
				w.Packets, w.Bytes = counted(r)
				oc.Rules = append(oc.Rules, &w)
				continue
			}
			oc.Rules = append(oc.Rules, &reconcile.Rule{Raw: fmt.Sprintf("<a rule netlab does not write here, handle %d>", r.Handle)})
		}
		out.Chains = append(out.Chains, oc)
	}
	return out, nil
}

// iptKey is a rule's expressions as bytes, counters zeroed.
func iptKey(exprs []expr.Any) (string, bool) {
	var b strings.Builder
	for _, e := range exprs {
		if _, ok := e.(*expr.Counter); ok {
			e = &expr.Counter{}
		}
		m, err := expr.Marshal(byte(nftables.TableFamilyIPv4), e)
		if err != nil {
			return "", false
		}
		fmt.Fprintf(&b, "%d:%s", len(m), m)
	}
	return b.String(), true
}
