package kernel

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// Writing and removing the iptables layout (iptables.go says how it is owned).

// replaceIptables writes the lab's part of the layout's tables in one
// transaction: its earlier rules, the daemon's and any rule netlab does not
// write in the chains it made go; the tables and chains it needs come; the
// daemon's rules and the lab's are placed among other labs' rules as dockerd
// would place them. A lab alone in the tables that changes its dockerd
// (docker-version, userland-proxy) is first taken out as by down.
func (d *Driver) replaceIptables(t *reconcile.Table) error {
	unlock, err := d.lockIptables(t.NS)
	if err != nil {
		return err
	}
	defer unlock()
	relayout, err := d.writeIptables(t)
	if err != nil || !relayout {
		return err
	}
	if err := d.removeIptables(t.NS, t.Name); err != nil {
		return err
	}
	_, err = d.writeIptables(t)
	return err
}

// lockIptables serializes the read-modify-write of the layout's tables in the
// host, which several labs share, across netlab runs: under the machine-wide
// lock of the host's shared state (the namespaces of a lab are its own).
func (d *Driver) lockIptables(ns string) (func(), error) {
	if ns != reconcile.Host {
		return func() {}, nil
	}
	return d.state.lockHostSysctls()
}

// writeIptables is replaceIptables' transaction; it writes nothing and says
// so when the lab is alone in the tables with another dockerd's layout.
func (d *Driver) writeIptables(t *reconcile.Table) (relayout bool, err error) {
	lab := strings.TrimPrefix(t.Name, "netlab-")
	conn, done, err := d.nftConn(t.NS)
	if err != nil {
		return false, err
	}
	defer done()
	k, err := readIptables(conn)
	if err != nil {
		return false, fmt.Errorf("netns %s: read ip raw / ip filter / ip nat: %w", t.NS, err)
	}
	if c := k.conflicts(t.NS, lab, t, nil); len(c) > 0 {
		return false, errors.New(c[0])
	}
	if rec, had := k.record(); had && rec.dockerd != t.Dockerd {
		return true, nil
	}
	w, err := newIptWriter(conn, k, lab, t)
	if err != nil {
		return false, err
	}
	if err := w.write(t); err != nil {
		return false, fmt.Errorf("netns %s: %w", t.NS, err)
	}
	if err := conn.Flush(); err != nil {
		return false, fmt.Errorf("netns %s: write the iptables layout: %w", t.NS, err)
	}
	return false, nil
}

// iptWriter is one transaction of replaceIptables.
type iptWriter struct {
	conn      *nftables.Conn
	k         *iptKernel
	lab       string
	gen       int64 // the lab's generation: 1 + the latest of the labs already there
	rec       iptRecord
	remaining map[string][]*nftables.Rule // the rules that stay, by chain: other labs' and other tools'
}

func newIptWriter(conn *nftables.Conn, k *iptKernel, lab string, t *reconcile.Table) (*iptWriter, error) {
	labs, latest := k.labs()
	w := &iptWriter{conn: conn, k: k, lab: lab, gen: labs[lab], remaining: map[string][]*nftables.Rule{}}
	if w.gen == 0 {
		w.gen = latest + 1
	}
	rec, had := k.record()
	if !had {
		rec = iptRecord{dockerd: t.Dockerd}
		if f := k.chains["filter/FORWARD"]; f != nil {
			rec.policy = policyOf(f)
		}
	}
	w.rec = rec
	for _, key := range k.order {
		for _, r := range k.rules[key] {
			switch k.classify(key, r, lab) {
			case classOwn, classShared:
				if err := conn.DelRule(r); err != nil {
					return nil, err
				}
			default:
				w.remaining[key] = append(w.remaining[key], r)
			}
		}
	}
	return w, nil
}

// write adds the tables and chains the layout needs, then its rules.
func (w *iptWriter) write(t *reconcile.Table) error {
	for _, name := range reconcile.IptTables {
		if w.k.tables[name] == nil && slices.ContainsFunc(t.Chains, func(c *reconcile.Chain) bool { return c.Table == name }) {
			w.k.tables[name] = w.conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
			w.rec.create(name)
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, c := range t.Chains {
		key := c.Table + "/" + c.Name
		have := w.k.chains[key]
		switch {
		case have == nil:
			chains[key] = w.conn.AddChain(iptDriverChain(w.k.tables[c.Table], c, c.Policy))
			if c.Hook != "" || dockerChain(key) {
				w.rec.create(key)
			}
		case c.Hook != "" && c.Policy != "" && policyOf(have) != c.Policy:
			w.conn.AddChain(iptDriverChain(w.k.tables[c.Table], c, c.Policy))
			chains[key] = have
		default:
			chains[key] = have
		}
	}
	for _, c := range t.Chains {
		key := c.Table + "/" + c.Name
		for _, r := range c.Rules {
			exprs, err := compileXT(r)
			if err != nil {
				return fmt.Errorf("ip %s chain %s: %w", c.Table, c.Name, err)
			}
			m := iptMark{seq: globalSeq(r, w.gen), rec: w.rec}
			if !r.Shared {
				m.lab = w.lab
			}
			nr := &nftables.Rule{Table: w.k.tables[c.Table], Chain: chains[key], Exprs: exprs, UserData: m.bytes()}
			if next := firstAfter(w.remaining[key], m.seq); next != nil {
				nr.Position = next.Handle
				w.conn.InsertRule(nr)
			} else {
				w.conn.AddRule(nr)
			}
		}
	}
	return nil
}

// firstAfter is the first of the rules that stay that another lab wrote at a
// later place than seq: a rule is inserted before it, or appended when none.
func firstAfter(rules []*nftables.Rule, seq int64) *nftables.Rule {
	for _, r := range rules {
		if m, ok := markOf(r.UserData); ok && m.seq > seq {
			return r
		}
	}
	return nil
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

// deleteIptables removes the lab's rules; when no other lab's are left, also
// the daemon's rules, the chains and tables netlab created (when nothing else
// is left in them), and puts FORWARD's policy back.
func (d *Driver) deleteIptables(ns, name string) error {
	unlock, err := d.lockIptables(ns)
	if err != nil {
		return err
	}
	defer unlock()
	return d.removeIptables(ns, name)
}

func (d *Driver) removeIptables(ns, name string) error {
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return err
	}
	defer done()
	k, err := readIptables(conn)
	if err != nil {
		return fmt.Errorf("netns %s: read ip raw / ip filter / ip nat: %w", ns, err)
	}
	lab := strings.TrimPrefix(name, "netlab-")
	labs, _ := k.labs()
	mine := labs[lab] != 0
	delete(labs, lab)
	if !mine && (len(labs) > 0 || !k.hasRecord()) {
		return nil // nothing of the lab's, nor a daemon's part that no lab holds
	}
	last := len(labs) == 0
	var kept map[string]string
	if last {
		kept = k.keptChains(lab)
	}
	left := map[string]int{} // the rules that stay, by chain
	for _, key := range k.order {
		for _, r := range k.rules[key] {
			c := k.classify(key, r, lab)
			if c == classOwn || last && (c == classShared || c == classAdmin && kept[key] == "") {
				if err := conn.DelRule(r); err != nil {
					return err
				}
			} else {
				left[key]++
			}
		}
	}
	if last {
		k.restorePolicy(conn)
	}
	// The lab's rules and the policy in one batch: no chain left behind
	// (another tool's still uses it) keeps them from going.
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: remove the lab's iptables rules: %w", ns, err)
	}
	if !last {
		return nil
	}
	return k.removeDaemon(conn, ns, left, kept)
}

// keptChains are the chains netlab made that the last down leaves, and why:
// rules netlab did not write are in them, or jump to them (a dockerd's
// started after the first lab, an admin's), and netlab never deletes those.
func (k *iptKernel) keptChains(lab string) map[string]string {
	kept := map[string]string{}
	stays := func(key string, r *nftables.Rule) bool {
		switch k.classify(key, r, lab) {
		case classForeign, classStray, classOther:
			return true
		case classAdmin:
			return kept[key] != ""
		}
		return false
	}
	for range 2 { // a second pass for DOCKER-USER's rules, which stay when it does
		for _, key := range k.order {
			table, name, _ := strings.Cut(key, "/")
			for _, r := range k.rules[key] {
				if !stays(key, r) {
					continue
				}
				if k.netlabChain(key) && kept[key] == "" {
					kept[key] = fmt.Sprintf("it holds rule handle %d that netlab did not write", r.Handle)
				}
				if to := table + "/" + jumpTarget(r); k.netlabChain(to) && kept[to] == "" {
					kept[to] = fmt.Sprintf("rule handle %d of chain %s, which netlab did not write, jumps to it", r.Handle, name)
				}
			}
		}
	}
	return kept
}

// restorePolicy puts FORWARD's policy back to what it was before the first lab.
func (k *iptKernel) restorePolicy(conn *nftables.Conn) {
	f := k.chains["filter/FORWARD"]
	if f == nil {
		return
	}
	want := k.rec.policy
	if k.rec.made("filter/FORWARD") || want == "" {
		want = "ACCEPT" // a chain netlab made, that goes unless something else now uses it
	}
	if policyOf(f) != want {
		pol := nftables.ChainPolicyAccept
		if want == "DROP" {
			pol = nftables.ChainPolicyDrop
		}
		f.Policy = &pol
		conn.AddChain(f)
	}
}

// removeDaemon removes, once the last lab's rules are gone, what the first
// lab created: Docker's chains, then the built-in chains and the tables, each
// when nothing is left in it and nothing left jumps to it, each on its own
// (one that cannot go does not keep the others); it says what it left and why.
func (k *iptKernel) removeDaemon(conn *nftables.Conn, ns string, left map[string]int, kept map[string]string) error {
	var problems []string
	gone := map[string]int{}
	for _, builtin := range []bool{false, true} {
		for _, key := range k.order {
			c := k.chains[key]
			ours := k.netlabChain(key)
			if builtin {
				ours = c.Hooknum != nil && k.rec.made(key)
			}
			if !ours || left[key] > 0 || kept[key] != "" {
				if why := kept[key]; why != "" && !builtin {
					problems = append(problems, fmt.Sprintf("ip %s chain %s (%s)", c.Table.Name, c.Name, why))
				}
				continue
			}
			conn.DelChain(c)
			if err := conn.Flush(); err != nil {
				problems = append(problems, fmt.Sprintf("ip %s chain %s (%v)", c.Table.Name, c.Name, err))
				continue
			}
			gone[c.Table.Name]++
		}
	}
	for _, table := range reconcile.IptTables {
		n := 0
		for _, key := range k.order {
			if strings.HasPrefix(key, table+"/") {
				n++
			}
		}
		if k.rec.made(table) && k.tables[table] != nil && gone[table] == n {
			conn.DelTable(k.tables[table])
			if err := conn.Flush(); err != nil {
				problems = append(problems, fmt.Sprintf("table ip %s (%v)", table, err))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("netns %s: the labs' iptables rules are removed and FORWARD's policy is back, but netlab left %s: "+
		"a dockerd started after the first lab, or an admin, uses them; netlab never deletes rules it did not write. "+
		"Remove them by hand (or stop dockerd), or leave them: netlab no longer holds them, and down again finishes", ns, strings.Join(problems, "; "))
}
