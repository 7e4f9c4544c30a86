package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/nftables"

	"netlab/reconcile"
)

// The iptables layout written by the script of `plan -o commands`: the
// script writes the rules with iptables-restore --noflush, which is what a
// student reads and could type, and netlab records around it what `up`
// records in each rule's mark (iptables.go), which iptables-restore cannot
// write:
//
//	netlab __save-iptables LAB NETNS   before: what the tables hold (FORWARD's
//	                                   policy, the tables and built-in chains
//	                                   there, the last rule's handle of each)
//	iptables-restore --noflush <<EOF   the layout, as iptables-save prints it
//	netlab __mark-iptables LAB NETNS   after: the rules iptables-restore just
//	                                   wrote get the lab's marks
//
// The mark goes only on rules that came after __save-iptables (a higher
// handle: the kernel numbers a table's objects upwards), in the chains the
// lab writes, unmarked, and only when in each of those chains they are
// exactly the lab's rules in the lab's order (compared expression by
// expression with what `up` writes): a rule anyone else added meanwhile, a
// running dockerd's, or an edited lab file, and nothing is marked. What
// __save-iptables found waits in the lab's state directory (iptables.json)
// until __mark-iptables has used it.

// iptSaved is what __save-iptables found in one namespace.
type iptSaved struct {
	NS      string            `json:"netns"`
	Policy  string            `json:"forward_policy,omitempty"` // FORWARD's; "" when there was none
	Existed []string          `json:"existed"`                  // the keys of iptCreatable that were there
	Handles map[string]uint64 `json:"handles"`                  // per table there: its highest rule handle
}

func (s *stateDir) savedIptablesPath(lab string) string {
	return filepath.Join(s.labDir(lab), "iptables.json")
}

func (s *stateDir) savedIptables(lab string) (map[string]iptSaved, error) {
	var list []iptSaved
	err := s.readJSON(s.savedIptablesPath(lab), &list)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]iptSaved{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read what lab %s saved of iptables: %w", lab, err)
	}
	out := map[string]iptSaved{}
	for _, e := range list {
		out[e.NS] = e
	}
	return out, nil
}

func (s *stateDir) writeSavedIptables(lab string, saved map[string]iptSaved) error {
	if len(saved) == 0 {
		if err := s.remove(s.savedIptablesPath(lab)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := s.ensure(lab); err != nil {
		return err
	}
	list := make([]iptSaved, 0, len(saved))
	for _, ns := range sortedNames(saved) {
		list = append(list, saved[ns])
	}
	return s.writeJSON(s.savedIptablesPath(lab), list)
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// readIptablesIn reads a namespace's ip raw / ip filter / ip nat.
func (d *Driver) readIptablesIn(ns string) (*iptKernel, error) {
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	k, err := readIptables(conn)
	if err != nil {
		return nil, fmt.Errorf("netns %s: read ip raw / ip filter / ip nat: %w", ns, err)
	}
	return k, nil
}

// aloneIn refuses when other labs have their rules in the tables: the
// script's iptables-restore appends the layout as one dockerd's alone, where
// `up` would merge it with theirs.
func (k *iptKernel) aloneIn(ns, lab string) error {
	labs, _ := k.labs()
	delete(labs, lab)
	if len(labs) == 0 {
		return nil
	}
	return fmt.Errorf("iptables %s: lab %s has Docker's iptables layout there: the script of plan -o commands writes lab %s's alone "+
		"(iptables-restore appends it as one dockerd's rules); bring it up with netlab up, which merges the labs as dockerd would: nothing was changed",
		ns, strings.Join(sortedNames(labs), ", "), lab)
}

// SaveIptables records what a namespace's ip raw / ip filter / ip nat hold
// before the script's iptables-restore writes lab's layout there, as `up`
// notes it before its first write: FORWARD's policy, the tables and built-in
// chains there, and the highest rule handle of each table. It refuses where
// `up` would (chains of Docker's names netlab did not create, a running
// dockerd's) and where other labs have their rules, before any change. The
// lab's own earlier rules are taken out first, as `up` replaces them (and
// the tables are then as they were before the lab). Run again before
// __mark-iptables, it keeps what it first found, and checks again: Docker
// chains are the script's only when every unmarked rule in them is newer
// than what it found.
//
// Equivalent to nothing: iptables-restore cannot write netlab's marks.
func (d *Driver) SaveIptables(lab, ns string) error {
	return d.withSavedIptables(lab, ns, func(saved map[string]iptSaved) error { return d.saveIptables(lab, ns, saved) })
}

// withSavedIptables runs f on what the lab's steps saved, under the lock of
// the layout's tables (see lockIptables).
func (d *Driver) withSavedIptables(lab, ns string, f func(saved map[string]iptSaved) error) error {
	unlock, err := d.lockIptables(ns)
	if err != nil {
		return err
	}
	defer unlock()
	saved, err := d.state.savedIptables(lab)
	if err != nil {
		return err
	}
	return f(saved)
}

func (d *Driver) saveIptables(lab, ns string, saved map[string]iptSaved) error {
	k, err := d.readIptablesIn(ns)
	if err != nil {
		return err
	}
	if err := k.aloneIn(ns, lab); err != nil {
		return err
	}
	labs, _ := k.labs()
	earlier, reuse := saved[ns]
	reuse = reuse && labs[lab] == 0 // saved already; the script's rules may be written since
	var since *iptSaved
	if reuse {
		since = &earlier // the Docker chains and rules newer than it are the script's
	}
	if c := k.conflicts(ns, lab, &reconcile.Table{}, since); len(c) > 0 {
		return errors.New(c[0] + ": nothing was changed")
	}
	if reuse {
		return nil
	}
	if k.hasRecord() {
		if err := d.removeIptables(ns, reconcile.TableName(lab)); err != nil {
			return err
		}
		if k, err = d.readIptablesIn(ns); err != nil {
			return err
		}
	}
	saved[ns] = k.snapshot(ns)
	return d.state.writeSavedIptables(lab, saved)
}

// snapshot is what SaveIptables records of the tables.
func (k *iptKernel) snapshot(ns string) iptSaved {
	s := iptSaved{NS: ns, Handles: map[string]uint64{}}
	if f := k.chains["filter/FORWARD"]; f != nil {
		s.Policy = policyOf(f)
	}
	for _, key := range iptCreatable {
		if k.has(key) {
			s.Existed = append(s.Existed, key)
		}
	}
	for name := range k.tables {
		s.Handles[name] = 0
	}
	for key, rules := range k.rules {
		table, _, _ := strings.Cut(key, "/")
		for _, r := range rules {
			s.Handles[table] = max(s.Handles[table], r.Handle)
		}
	}
	return s
}

// has says whether a table ("filter"), a built-in chain ("filter/FORWARD")
// or a Docker chain ("filter/DOCKER") is there.
func (k *iptKernel) has(key string) bool {
	if !strings.Contains(key, "/") {
		return k.tables[key] != nil
	}
	c := k.chains[key]
	return c != nil && (c.Hooknum != nil || dockerChain(key))
}

// MarkIptables gives the rules of lab's layout t that the script's
// iptables-restore wrote since SaveIptables the marks `up` gives them, with
// the record of what SaveIptables found (see the top of this file for which
// rules, and when none). Run again, it finds the lab's rules marked and does
// nothing.
//
// Equivalent to nothing: iptables-restore cannot write netlab's marks.
func (d *Driver) MarkIptables(lab string, t *reconcile.Table) error {
	return d.withSavedIptables(lab, t.NS, func(saved map[string]iptSaved) error { return d.markIptables(lab, t, saved) })
}

func (d *Driver) markIptables(lab string, t *reconcile.Table, saved map[string]iptSaved) error {
	conn, done, err := d.nftConn(t.NS)
	if err != nil {
		return err
	}
	defer done()
	k, err := readIptables(conn)
	if err != nil {
		return fmt.Errorf("netns %s: read ip raw / ip filter / ip nat: %w", t.NS, err)
	}
	if err := k.aloneIn(t.NS, lab); err != nil {
		return err
	}
	before, ok := saved[t.NS]
	if labs, _ := k.labs(); labs[lab] != 0 {
		delete(saved, t.NS) // marked already
		return d.state.writeSavedIptables(lab, saved)
	}
	if !ok {
		return fmt.Errorf("iptables %s: nothing saved of the tables before lab %s's rules were written: "+
			"run netlab __save-iptables %s %s before iptables-restore", t.NS, lab, lab, t.NS)
	}
	if err := k.markNew(conn, lab, t, before); err != nil {
		return fmt.Errorf("iptables %s: %w: nothing was marked", t.NS, err)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("netns %s: mark lab %s's iptables rules: %w", t.NS, lab, err)
	}
	delete(saved, t.NS)
	return d.state.writeSavedIptables(lab, saved)
}

// markNew replaces each rule written since before with the same rule
// carrying its mark, in its place, once every chain of t holds exactly t's rules among them.
func (k *iptKernel) markNew(conn *nftables.Conn, lab string, t *reconcile.Table, before iptSaved) error {
	rec := iptRecord{dockerd: t.Dockerd, policy: before.Policy}
	for _, key := range iptCreatable {
		if !slices.Contains(before.Existed, key) && k.has(key) && (!dockerChain(key) || t.IptChain(splitKey(key)) != nil) {
			rec.create(key)
		}
	}
	var marked []*nftables.Rule
	for _, c := range t.Chains {
		key := c.Table + "/" + c.Name
		var written []*nftables.Rule
		for _, r := range k.rules[key] {
			if _, ok := markOf(r.UserData); !ok && k.writtenSince(c.Table, r, before) {
				written = append(written, r)
			}
		}
		if len(written) != len(c.Rules) {
			return fmt.Errorf("ip %s chain %s holds %d rules written since netlab __save-iptables, and lab %s has %d there", c.Table, c.Name, len(written), lab, len(c.Rules))
		}
		for i, w := range c.Rules {
			exprs, err := compileXT(w)
			if err != nil {
				return fmt.Errorf("ip %s chain %s: %w", c.Table, c.Name, err)
			}
			want, _ := exprsKey(nftables.TableFamilyIPv4, exprs)
			if found, ok := exprsKey(nftables.TableFamilyIPv4, written[i].Exprs); !ok || found != want {
				return fmt.Errorf("ip %s chain %s: rule %d written since netlab __save-iptables is not lab %s's %q", c.Table, c.Name, i+1, lab, w.IptablesText(c.Name))
			}
			m := iptMark{seq: globalSeq(w, 1), rec: rec}
			if !w.Shared {
				m.lab = lab
			}
			marked = append(marked, written[i], &nftables.Rule{Table: k.tables[c.Table], Chain: k.chains[key], Position: written[i].Handle, Exprs: exprs, UserData: m.bytes()})
		}
	}
	// Each rule's marked copy goes right after it, then the rule goes (a
	// replace would echo two messages for one, which the library does not read).
	for i := 0; i < len(marked); i += 2 {
		conn.AddRule(marked[i+1])
		if err := conn.DelRule(marked[i]); err != nil {
			return err
		}
	}
	return nil
}

// splitKey is a chain's key ("filter/DOCKER") as table and name.
func splitKey(key string) (table, name string) {
	table, name, _ = strings.Cut(key, "/")
	return table, name
}

// writtenSince says whether a rule of that table came after before was taken.
func (k *iptKernel) writtenSince(table string, r *nftables.Rule, before iptSaved) bool {
	last, had := before.Handles[table]
	return !had || r.Handle > last
}
