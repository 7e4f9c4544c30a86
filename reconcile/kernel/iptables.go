package kernel

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
	"netlab/topology"
)

// The iptables layout in the kernel (reconcile/iptables.go): the lab's rules
// in the shared tables ip raw / ip filter / ip nat, written with the
// expressions iptables-nft writes, so that iptables-save reads them as
// dockerd's.
//
// Ownership: every rule netlab writes there carries a mark in its userdata
// (where iptables-nft keeps `-m comment`, under a type of its own so that
// iptables-save does not print it): the lab whose network wrote it, or none
// for the daemon's own rules that every lab of the layout shares (the jumps to
// DOCKER-USER and DOCKER, the RETURNs); its place among every lab's rules of
// its chain; and the record of the layout: which dockerd's it is, the tables,
// built-in chains and Docker chains netlab created, and FORWARD's policy
// before the first lab set it. The first lab makes the shared part, every lab adds its own
// rules where dockerd would put its networks' (a later lab's networks are
// newer), and the last lab down removes the shared part, the chains and
// tables netlab created, and puts the policy back. Chains of Docker's names
// that the record does not name (a live dockerd's, even one started after the
// first lab), and rules without a mark in the Docker chains netlab created or
// jumping to them (a dockerd's or an admin's), are a conflict: nothing is
// written beside them, and netlab never deletes them.

// markType is the userdata type of netlab's mark (iptables-nft reads only its
// comment type; nft ignores types it does not know).
const markType userdata.Type = 0x7e

// iptCreatable are the tables, built-in chains and Docker chains netlab may
// create; the record keeps which it did as a bit each (23 of the mark's 32).
// A chain of Docker's name is netlab's only where its bit is set: one that
// appears later (a dockerd started after the first lab) is not.
var iptCreatable = func() []string {
	out := slices.Clone(reconcile.IptTables)
	for _, t := range reconcile.IptTables {
		for _, name := range []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"} {
			if reconcile.IptBuiltin(t, name) != nil {
				out = append(out, t+"/"+name)
			}
		}
	}
	for _, name := range reconcile.DockerChains {
		out = append(out, "filter/"+name)
	}
	return append(out, "nat/DOCKER", "nat/DOCKER-INGRESS")
}()

// iptRecord is what every mark carries: the layout and what the first lab found.
type iptRecord struct {
	dockerd string // reconcile.Table.Dockerd: "26.1", "29 noproxy"
	created uint32 // bits of iptCreatable
	policy  string // FORWARD's policy before the first lab: "ACCEPT", "DROP"; "" when netlab created FORWARD
}

func (r *iptRecord) create(key string) { r.created |= 1 << slices.Index(iptCreatable, key) }
func (r iptRecord) made(key string) bool {
	i := slices.Index(iptCreatable, key)
	return i >= 0 && r.created&(1<<i) != 0
}

// iptMark is a rule's mark: "netlab:LAB|SEQ|DOCKERD|CREATED|POLICY".
type iptMark struct {
	lab string // "" for a rule of the daemon's (shared)
	seq int64  // the rule's place in its chain among every lab's (see globalSeq)
	rec iptRecord
}

func (m iptMark) bytes() []byte {
	s := fmt.Sprintf("netlab:%s|%d|%s|%x|%s", m.lab, m.seq, m.rec.dockerd, m.rec.created, m.rec.policy)
	return userdata.AppendString(nil, markType, s)
}

func markOf(ud []byte) (iptMark, bool) {
	s, ok := userdataString(ud, markType)
	if !ok || !strings.HasPrefix(s, "netlab:") {
		return iptMark{}, false
	}
	parts := strings.Split(strings.TrimPrefix(s, "netlab:"), "|")
	if len(parts) != 5 {
		return iptMark{}, false
	}
	seq, err1 := strconv.ParseInt(parts[1], 10, 64)
	created, err2 := strconv.ParseUint(parts[3], 16, 32)
	if err1 != nil || err2 != nil {
		return iptMark{}, false
	}
	// A mark is netlab's only when every part is one netlab writes: a forged or
	// garbled one must not name a lab that cannot exist, nor give down a policy
	// to restore that is not one.
	lab, policy := parts[0], parts[4]
	if lab != "" && topology.CheckLabName(lab) != nil || policy != "" && policy != "ACCEPT" && policy != "DROP" {
		return iptMark{}, false
	}
	return iptMark{lab: lab, seq: seq, rec: iptRecord{dockerd: parts[2], created: uint32(created), policy: policy}}, true
}

// genShift puts a lab's generation above its rules' places: a rule of a lab
// that came up later sorts as a later step of dockerd's.
const genShift = 32

// globalSeq is the place in the kernel of a rule the lab writes: the daemon's
// rules keep theirs, a lab's rules are its generation's steps.
func globalSeq(r *reconcile.Rule, gen int64) int64 {
	if r.Shared {
		return r.Seq
	}
	if r.Seq < 0 {
		return -(gen<<genShift | -r.Seq)
	}
	return gen<<genShift | r.Seq
}

// generation is a lab's, from a place of one of its rules.
func generation(seq int64) int64 {
	if seq < 0 {
		seq = -seq
	}
	return seq >> genShift
}

// iptKernel is what ip raw / ip filter / ip nat hold.
type iptKernel struct {
	tables map[string]*nftables.Table
	chains map[string]*nftables.Chain // "filter/FORWARD"
	order  []string                   // the chains' keys, as listed
	rules  map[string][]*nftables.Rule
	rec    iptRecord // the layout's record as read (see record); zero when none
}

func readIptables(conn *nftables.Conn) (*iptKernel, error) {
	k := &iptKernel{tables: map[string]*nftables.Table{}, chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{}}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if slices.Contains(reconcile.IptTables, t.Name) {
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
		k.order = append(k.order, key)
		if k.rules[key], err = conn.GetRules(c.Table, c); err != nil {
			return nil, err
		}
	}
	k.rec, _ = k.record()
	return k, nil
}

// record finds the layout's record: a shared rule's, else any netlab rule's.
func (k *iptKernel) record() (iptRecord, bool) {
	var found *iptRecord
	for _, key := range k.order {
		for _, r := range k.rules[key] {
			if m, ok := markOf(r.UserData); ok {
				if m.lab == "" {
					return m.rec, true
				}
				if found == nil {
					found = &m.rec
				}
			}
		}
	}
	if found == nil {
		return iptRecord{}, false
	}
	return *found, true
}

// labs are the labs with rules in the tables, and the latest generation of any.
func (k *iptKernel) labs() (labs map[string]int64, latest int64) {
	labs = map[string]int64{}
	for _, rules := range k.rules {
		for _, r := range rules {
			if m, ok := markOf(r.UserData); ok && m.lab != "" {
				labs[m.lab] = generation(m.seq)
				latest = max(latest, generation(m.seq))
			}
		}
	}
	return labs, latest
}

// dockerChain says whether a chain has one of Docker's names.
func dockerChain(key string) bool {
	_, name, _ := strings.Cut(key, "/")
	return slices.Contains(reconcile.DockerChains, name)
}

// netlabChain says whether a chain is one netlab made for the layout: of
// Docker's name, and in the layout's record.
func (k *iptKernel) netlabChain(key string) bool {
	return dockerChain(key) && k.rec.made(key)
}

// jumpTarget is the chain a rule jumps or goes to, "" when none.
func jumpTarget(r *nftables.Rule) string {
	for _, e := range r.Exprs {
		if v, ok := e.(*expr.Verdict); ok && (v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto) {
			return v.Chain
		}
	}
	return ""
}

// iptClass is what a rule in the layout's tables is to a lab.
type iptClass uint8

const (
	classForeign iptClass = iota // another tool's: left alone
	classOwn                     // the lab's own
	classShared                  // the daemon's part, every lab's
	classOther                   // another lab's
	classStray                   // an unmarked rule in a chain netlab made: a dockerd's or an admin's, a conflict, never deleted
	classAdmin                   // an unmarked rule in DOCKER-USER: the admin's, kept while a lab is up
)

func (k *iptKernel) classify(key string, r *nftables.Rule, lab string) iptClass {
	m, ok := markOf(r.UserData)
	switch {
	case ok && m.lab == lab:
		return classOwn
	case ok && m.lab == "":
		return classShared
	case ok:
		return classOther
	case key == "filter/DOCKER-USER":
		// The place for the admin's own rules: dockerd never touches them,
		// netlab neither, until the last lab takes the chain away.
		return classAdmin
	case k.netlabChain(key):
		return classStray
	}
	return classForeign
}

// conflicts says why the lab's layout cannot be written beside what the
// tables hold: chains of Docker's names netlab did not make (a dockerd's),
// unmarked rules in the chains it made or jumping to them (a dockerd's that
// started after the first lab, or an admin's: netlab never deletes them), or
// other labs of another dockerd's layout. With since (the snapshot a re-run
// __save-iptables reuses), rules newer than its handles are the script's own.
func (k *iptKernel) conflicts(ns, lab string, t *reconcile.Table, since *iptSaved) []string {
	out := k.chainConflicts(ns, since)
	if len(out) > 0 {
		return out
	}
	if !k.hasRecord() {
		return nil
	}
	labs, _ := k.labs()
	delete(labs, lab)
	if k.rec.dockerd == t.Dockerd || len(labs) == 0 {
		return nil
	}
	others := strings.Join(sortedNames(labs), ", ")
	return []string{fmt.Sprintf("iptables %s: lab %s has Docker %s's iptables layout there, lab %s wants %s's: one dockerd writes one layout; "+
		"give the labs the same docker: version and userland-proxy, or take %s down first",
		ns, others, k.rec.dockerd, lab, t.Dockerd, others)}
}

func (k *iptKernel) hasRecord() bool {
	_, ok := k.record()
	return ok
}

const iptFix = "netlab writes Docker's iptables layout only where no other tool does: stop dockerd and remove its chains and rules " +
	"(or reboot), or use docker: {firewall: native}, netlab's own table, which coexists with anything"

// chainConflicts are conflicts' chains and unmarked rules.
func (k *iptKernel) chainConflicts(ns string, since *iptSaved) []string {
	var out []string
	ours := map[string]bool{}
	for _, key := range k.order {
		if !dockerChain(key) {
			continue
		}
		if k.rec.made(key) || since != nil && k.allSince(key, *since) {
			ours[key] = true
			continue
		}
		table, name, _ := strings.Cut(key, "/")
		out = append(out, fmt.Sprintf("iptables %s: table ip %s already has a chain %s that netlab did not create (a running dockerd's?). %s", ns, table, name, iptFix))
	}
	for _, key := range k.order {
		table, name, _ := strings.Cut(key, "/")
		for _, r := range k.rules[key] {
			if _, ok := markOf(r.UserData); ok || since != nil && k.writtenSince(table, r, *since) {
				continue
			}
			if to := jumpTarget(r); ours[table+"/"+to] {
				out = append(out, fmt.Sprintf("iptables %s: rule handle %d of ip %s chain %s jumps to %s, a chain netlab created, and netlab did not write it "+
					"(a dockerd started after the first lab? an admin's?): netlab never deletes it, and cannot remove %s while it is there: "+
					"delete it (nft delete rule ip %s %s handle %d) or take the labs down; %s", ns, r.Handle, table, name, to, to, table, name, r.Handle, iptFix))
			} else if ours[key] && key != "filter/DOCKER-USER" {
				out = append(out, fmt.Sprintf("iptables %s: ip %s chain %s, which netlab created, holds rule handle %d that netlab did not write "+
					"(a dockerd started after the first lab? an admin's?): netlab never deletes it: delete it (nft delete rule ip %s %s handle %d) "+
					"or take the labs down; %s", ns, table, name, r.Handle, table, name, r.Handle, iptFix))
			}
		}
	}
	return out
}

// allSince says whether every unmarked rule of a chain is newer than since.
func (k *iptKernel) allSince(key string, since iptSaved) bool {
	table, _, _ := strings.Cut(key, "/")
	for _, r := range k.rules[key] {
		if _, ok := markOf(r.UserData); !ok && !k.writtenSince(table, r, since) {
			return false
		}
	}
	return true
}

// compileXT compiles a rule with iptables-nft's encoding, its matches in
// the order iptables-nft writes them (nft_ipv4_add): the input and output
// interfaces, the protocol, the source and destination addresses, then the
// -m matches in the rule's order. A rule iptables-restore writes is then the
// same expressions as netlab's (the script of plan -o commands writes them so).
func compileXT(r *reconcile.Rule) ([]expr.Any, error) {
	ordered := *r
	ordered.Match = slices.Clone(r.Match)
	slices.SortStableFunc(ordered.Match, func(a, b reconcile.Match) int { return cmp.Compare(xtRank(a), xtRank(b)) })
	return ruleCompiler{xt: true, nfproto: unix.NFPROTO_IPV4}.compile(&ordered)
}

func xtRank(m reconcile.Match) int {
	switch m := m.(type) {
	case reconcile.IIFName:
		return 0
	case reconcile.OIFName:
		return 1
	case reconcile.L4ProtoMatch:
		return 2
	case reconcile.AddrMatch:
		if m.Dir == reconcile.Src {
			return 3
		}
		return 4
	}
	return 5
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

func policyOf(c *nftables.Chain) string {
	if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
		return "DROP"
	}
	return "ACCEPT"
}

// observeIptables reads the lab's part of the layout's tables back into the
// model: the daemon's rules and the lab's own, in the kernel's order (other
// labs' are not the lab's), each that netlab would write with exactly the
// expressions found as the desired rule, anything else as found. Chains of
// Docker's names netlab did not make, or another lab's layout of another
// dockerd, are returned as conflicts (found at plan time, before any change).
func (d *Driver) observeIptables(ns, lab string, want *reconcile.Table) (*reconcile.Table, []string, error) {
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	k, err := readIptables(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("netns %s: read ip raw / ip filter / ip nat: %w", ns, err)
	}
	var conflicts []string
	if want != nil {
		conflicts = k.conflicts(ns, lab, want, nil)
		if len(conflicts) > 0 {
			conflicts = append(conflicts, d.recovery(k, ns, lab)...)
		}
	}
	if labs, _ := k.labs(); labs[lab] == 0 {
		return nil, conflicts, nil
	}
	rec, _ := k.record()
	out := &reconcile.Table{NS: ns, Name: reconcile.TableName(lab), Layout: reconcile.LayoutIptables, Dockerd: rec.dockerd}
	if want == nil {
		return out, conflicts, nil
	}
	wanted := map[string]bool{}
	for _, wc := range want.Chains {
		key := wc.Table + "/" + wc.Name
		wanted[key] = true
		if have := k.chains[key]; have != nil {
			out.Chains = append(out.Chains, k.observeChain(key, lab, wc))
		}
	}
	// A chain the lab no longer writes (an edit took its last container's
	// raw-table drop away) may still hold the lab's rules: they are seen too,
	// as rules not in the file, so the plan takes them out.
	for _, key := range k.order {
		if wanted[key] || !slices.ContainsFunc(k.rules[key], func(r *nftables.Rule) bool { return k.classify(key, r, lab) == classOwn }) {
			continue
		}
		table, name, _ := strings.Cut(key, "/")
		wc := &reconcile.Chain{Table: table, Name: name}
		if b := reconcile.IptBuiltin(table, name); b != nil {
			wc = b // declared as iptables-save declares it
		}
		out.Chains = append(out.Chains, k.observeChain(key, lab, wc))
	}
	return out, conflicts, nil
}

// observeChain is the lab's view of one chain: its rules and the daemon's.
func (k *iptKernel) observeChain(key, lab string, wc *reconcile.Chain) *reconcile.Chain {
	oc := &reconcile.Chain{Table: wc.Table, Name: wc.Name, Type: wc.Type, Hook: wc.Hook, Priority: wc.Priority}
	if wc.Hook != "" {
		if p := policyOf(k.chains[key]); p != "ACCEPT" {
			oc.Policy = p
		}
	}
	wanted := map[string][]*reconcile.Rule{}
	for _, r := range wc.Rules {
		if exprs, err := compileXT(r); err == nil {
			if written, ok := exprsKey(nftables.TableFamilyIPv4, exprs); ok {
				wanted[written] = append(wanted[written], r)
			}
		}
	}
	for _, r := range k.rules[key] {
		switch k.classify(key, r, lab) {
		case classForeign, classOther, classAdmin, classStray:
			continue
		}
		if found, ok := exprsKey(nftables.TableFamilyIPv4, r.Exprs); ok && len(wanted[found]) > 0 {
			w := *wanted[found][0]
			wanted[found] = wanted[found][1:]
			w.Packets, w.Bytes = counted(r)
			oc.Rules = append(oc.Rules, &w)
			continue
		}
		oc.Rules = append(oc.Rules, &reconcile.Rule{Raw: fmt.Sprintf("<a rule netlab does not write here, handle %d>", r.Handle)})
	}
	return oc
}
