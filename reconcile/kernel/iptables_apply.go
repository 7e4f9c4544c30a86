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
	if c := k.conflicts(t.NS, lab, t); len(c) > 0 {
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
			switch classify(key, r, lab) {
			case classOwn, classShared, classStray:
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
			if c.Hook != "" {
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
	_, had := k.record()
	mine := labs[lab] != 0
	delete(labs, lab)
	if !mine && (len(labs) > 0 || !had) {
		return nil // nothing of the lab's, nor a daemon's part that no lab holds
	}
	last := len(labs) == 0
	left := map[string]int{} // the rules that stay, by chain
	for _, key := range k.order {
		for _, r := range k.rules[key] {
			c := classify(key, r, lab)
			if c == classOwn || last && (c == classShared || c == classStray || c == classAdmin) {
				if err := conn.DelRule(r); err != nil {
					return err
				}
			} else {
				left[key]++
			}
		}
	}
	if last {
		k.removeDaemon(conn, left)
	}
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: remove the lab's iptables rules: %w", ns, err)
	}
	return nil
}

// removeDaemon removes what the first lab created once the last lab's rules
// are gone: Docker's chains (jumped to by netlab's rules only), then the
// built-in chains and the tables netlab created, each when nothing else is
// left in it; and FORWARD's policy goes back to what it was.
func (k *iptKernel) removeDaemon(conn *nftables.Conn, left map[string]int) {
	rec, _ := k.record()
	gone := map[string]int{}
	deleted := map[string]bool{}
	for _, builtin := range []bool{false, true} {
		for _, key := range k.order {
			c := k.chains[key]
			ours := netlabChain(key)
			if builtin {
				ours = c.Hooknum != nil && rec.made(key)
			}
			if ours && left[key] == 0 {
				conn.DelChain(c)
				gone[c.Table.Name]++
				deleted[key] = true
			}
		}
	}
	if f := k.chains["filter/FORWARD"]; f != nil && !deleted["filter/FORWARD"] {
		want := rec.policy
		if rec.made("filter/FORWARD") || want == "" {
			want = "ACCEPT" // a chain netlab made that something else now uses
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
	for _, table := range reconcile.IptTables {
		n := 0
		for _, key := range k.order {
			if strings.HasPrefix(key, table+"/") {
				n++
			}
		}
		if rec.made(table) && k.tables[table] != nil && gone[table] == n {
			conn.DelTable(k.tables[table])
		}
	}
}
