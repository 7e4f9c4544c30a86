package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// nftConn returns the nftables connection of a namespace, opening it on first use.
// A table is replaced in one transaction, sent as one message and answered with
// one acknowledgement per rule: the default socket buffers (about 200 KiB) hold
// some hundreds of rules. It asks for 4 MiB each way (the kernel caps them at
// net.core.wmem_max/rmem_max).
func (d *Driver) nftConn(ns string) (*nftables.Conn, error) {
	h, err := d.handle(ns)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if h.nft == nil {
		bigBuffer := func(c *netlink.Conn) error {
			if err := c.SetWriteBuffer(4 << 20); err != nil {
				return err
			}
			return c.SetReadBuffer(4 << 20)
		}
		h.nft, err = nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(h.fd)), nftables.WithSockOptions(bigBuffer))
		if err != nil {
			return nil, fmt.Errorf("netns %s: open nftables: %w", ns, err)
		}
	}
	return h.nft, nil
}

// hasTable reports whether a namespace holds an inet table of that name, with
// one dump on the namespace's plain nfnetlink socket.
//
// Equivalent to: nft list tables inet
func (d *Driver) hasTable(ns, name string) (bool, error) {
	h, err := d.handle(ns)
	if err != nil {
		return false, err
	}
	names, err := retryDump(func() ([]string, error) {
		req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETTABLE, unix.NLM_F_DUMP)
		req.AddData(nfgenmsg{family: unix.NFPROTO_INET})
		var names []string
		err := h.nf.request(req, func(m []byte) error {
			if len(m) < 4 {
				return nil
			}
			attrs, err := nl.ParseRouteAttr(m[4:])
			for _, a := range attrs {
				if a.Attr.Type == unix.NFTA_TABLE_NAME {
					names = append(names, string(trimNul(a.Value)))
				}
			}
			return err
		})
		return names, err
	})
	if err != nil {
		return false, fmt.Errorf("netns %s: list nftables tables: %w", ns, err)
	}
	return slices.Contains(names, name), nil
}

// nfgenmsg is the header of an nfnetlink request: the family it is about.
type nfgenmsg struct{ family uint8 }

func (m nfgenmsg) Len() int          { return 4 }
func (m nfgenmsg) Serialize() []byte { return []byte{m.family, unix.NFNETLINK_V0, 0, 0} }

func labTable(name string) *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
}

// replaceTable writes a table in one transaction: the old table (if any) is
// deleted and the new one created in the same batch, so a packet sees either
// all the old rules or all the new ones.
//
// Equivalent to: nft -f SCRIPT (table T; delete table T; table T { ... })
func (d *Driver) replaceTable(t *reconcile.Table) error {
	conn, err := d.nftConn(t.NS)
	if err != nil {
		return err
	}
	exists, err := d.hasTable(t.NS, t.Name)
	if err != nil {
		return err
	}
	if exists {
		conn.DelTable(labTable(t.Name))
	}
	table := conn.AddTable(labTable(t.Name))
	for i, set := range t.Sets {
		ns, elements, err := compileSet(table, set)
		if err != nil {
			return fmt.Errorf("netns %s: table %s: %w", t.NS, t.Name, err)
		}
		// The set's id within the batch, given here: left to the library, it
		// comes from a counter shared by all connections, unguarded, while tables
		// of several namespaces are written at once.
		ns.ID = uint32(i + 1)
		if err := conn.AddSet(ns, nil); err != nil {
			return fmt.Errorf("netns %s: table %s: %w", t.NS, t.Name, err)
		}
		// Elements in messages of a thousand: one attribute holds at most 64 KiB,
		// and the library cuts a longer one short without a word. Still one batch.
		for len(elements) > 0 {
			n := min(len(elements), 1000)
			if err := conn.SetAddElements(ns, elements[:n]); err != nil {
				return fmt.Errorf("netns %s: table %s: set %s: %w", t.NS, t.Name, set.Name, err)
			}
			elements = elements[n:]
		}
	}
	accept := nftables.ChainPolicyAccept
	for _, c := range t.Chains {
		prio := nftables.ChainPriority(c.Priority)
		chain := conn.AddChain(&nftables.Chain{
			Name: c.Name, Table: table, Type: nftables.ChainType(c.Type),
			Hooknum: hooks[c.Hook], Priority: &prio, Policy: &accept,
		})
		for _, r := range c.Rules {
			exprs, err := compileRule(r)
			if err != nil {
				return fmt.Errorf("netns %s: table %s: chain %s: %w", t.NS, t.Name, c.Name, err)
			}
			conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs, UserData: comment(r.Comment)})
		}
	}
	start := time.Now()
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("netns %s: replace table inet %s: %w", t.NS, t.Name, err)
	}
	d.log.Debug("nft transaction", "netns", t.NS, "table", t.Name, "rules", t.RuleCount(), "took", time.Since(start))
	return nil
}

// deleteTable removes a table of netlab's (the lab's, or a trace's); an absent
// one is fine.
//
// Equivalent to: nft delete table inet NAME
func (d *Driver) deleteTable(ns, name string) error {
	exists, err := d.hasTable(ns, name)
	if err != nil || !exists {
		return err
	}
	conn, err := d.nftConn(ns)
	if err != nil {
		return err
	}
	conn.DelTable(labTable(name))
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: delete table inet %s: %w", ns, name, err)
	}
	return nil
}

// hooks are the library's hooks of the model's.
var hooks = map[reconcile.Hook]*nftables.ChainHook{
	reconcile.HookPrerouting:  nftables.ChainHookPrerouting,
	reconcile.HookInput:       nftables.ChainHookInput,
	reconcile.HookForward:     nftables.ChainHookForward,
	reconcile.HookOutput:      nftables.ChainHookOutput,
	reconcile.HookPostrouting: nftables.ChainHookPostrouting,
}

func hookOf(h *nftables.ChainHook) reconcile.Hook {
	if h == nil {
		return ""
	}
	for name, hook := range hooks {
		if *hook == *h {
			return name
		}
	}
	return reconcile.Hook(strconv.Itoa(int(*h)))
}

// comment is a rule's comment as nft stores it (so `nft list ruleset` shows it).
func comment(s string) []byte {
	if s == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, s+"\x00")
}

func commentOf(ud []byte) string {
	s, _ := userdata.GetString(ud, userdata.TypeComment)
	return strings.TrimRight(s, "\x00")
}

// observeTable reads the lab's table in a namespace back into the model.
func (d *Driver) observeTable(ns, name string, want *reconcile.Table) (*reconcile.Table, error) {
	if ok, err := d.hasTable(ns, name); err != nil || !ok {
		return nil, err
	}
	conn, err := d.nftConn(ns)
	if err != nil {
		return nil, err
	}
	table := labTable(name)
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("netns %s: list nftables chains: %w", ns, err)
	}
	out := &reconcile.Table{NS: ns, Name: name}
	if out.Sets, err = observeSets(conn, table); err != nil {
		return nil, fmt.Errorf("netns %s: list nftables sets: %w", ns, err)
	}
	for _, c := range chains {
		if c.Table.Name != name {
			continue
		}
		rules, err := conn.GetRules(table, c)
		if err != nil {
			return nil, fmt.Errorf("netns %s: list rules of chain %s: %w", ns, c.Name, err)
		}
		out.Chains = append(out.Chains, observeChain(c, rules, findChain(want, c.Name)))
	}
	out.SortChains()
	return out, nil
}

// observeChain decodes a chain's rules. A rule is the file's when it decodes
// into a rule of want at that place, which netlab would write with exactly the
// expressions found; anything else is reported as it is found, with its
// handle, so the plan shows it and replaces the table.
func observeChain(c *nftables.Chain, rules []*nftables.Rule, want *reconcile.Chain) *reconcile.Chain {
	oc := &reconcile.Chain{Name: c.Name, Type: reconcile.ChainType(c.Type), Hook: hookOf(c.Hooknum)}
	if c.Priority != nil {
		oc.Priority = int(*c.Priority)
	}
	if c.Policy == nil || *c.Policy != nftables.ChainPolicyAccept {
		oc.Rules = append(oc.Rules, &reconcile.Rule{Raw: "<the chain's policy is not accept>"})
	}
	// The chain's desired rules by their text, so each rule found is recognised
	// wherever it stands (a reordered chain reads as such).
	wanted := map[string]int{}
	if want != nil {
		for _, w := range want.Rules {
			wanted[w.Text()]++
		}
	}
	for _, r := range rules {
		note := commentOf(r.UserData)
		rule, err := decodeRule(r.Exprs)
		if err == nil {
			rule.Comment = note
			if wanted[rule.Text()] > 0 && writesAsFound(rule, r.Exprs) {
				wanted[rule.Text()]--
				rule.Packets, rule.Bytes = counted(r)
				oc.Rules = append(oc.Rules, rule)
				continue
			}
		}
		// Not the file's: shown as it is, with its handle, so that it reads
		// as what it does and can be found with `nft -a list ruleset`.
		raw := fmt.Sprintf("<a rule netlab does not write: %v>", err)
		if rule != nil {
			raw = rule.Statement()
		}
		if note != "" {
			raw += fmt.Sprintf(" comment %q", note)
		}
		oc.Rules = append(oc.Rules, &reconcile.Rule{Raw: fmt.Sprintf("%s (handle %d, not in the file)", raw, r.Handle)})
	}
	return oc
}

// counted reads a rule's counter.
func counted(r *nftables.Rule) (packets, bytes uint64) {
	for _, e := range r.Exprs {
		if c, ok := e.(*expr.Counter); ok {
			return c.Packets, c.Bytes
		}
	}
	return 0, 0
}

func findChain(t *reconcile.Table, name string) *reconcile.Chain {
	if t == nil {
		return nil
	}
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// writesAsFound says whether netlab writes a rule with exactly the expressions
// found (counters aside: they count, they do not configure), so that a rule
// that reads the same but is written otherwise is rewritten.
func writesAsFound(r *reconcile.Rule, found []expr.Any) bool {
	exprs, err := compileRule(r)
	if err != nil {
		return false
	}
	a, okA := exprsKey(exprs)
	b, okB := exprsKey(found)
	return okA && okB && a == b
}

// exprsKey is a rule's expressions as netlink bytes, counters zeroed.
func exprsKey(exprs []expr.Any) (string, bool) {
	var b bytes.Buffer
	for _, e := range exprs {
		if c, ok := e.(*expr.Counter); ok && (c.Bytes != 0 || c.Packets != 0) {
			e = &expr.Counter{}
		}
		if l, ok := e.(*expr.Lookup); ok && l.SetID != 0 { // the kernel names the set; the id is the batch's
			copy := *l
			copy.SetID = 0
			e = &copy
		}
		m, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			return "", false
		}
		fmt.Fprintf(&b, "%d:", len(m))
		b.Write(m)
	}
	return b.String(), true
}

// forwardDrops finds base chains of other tables on the forward hook with policy
// drop: an accept in netlab's table is final only there, so such a chain (Docker's
// iptables FORWARD, a firewall) drops the lab's forwarded traffic anyway.
func (d *Driver) forwardDrops(ns, ours string) ([]string, error) {
	conn, err := d.nftConn(ns)
	if err != nil {
		return nil, err
	}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("netns %s: list nftables chains: %w", ns, err)
	}
	var out []string
	for _, c := range chains {
		if c.Table.Name == ours || c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookForward ||
			c.Policy == nil || *c.Policy != nftables.ChainPolicyDrop {
			continue
		}
		out = append(out, fmt.Sprintf("%s: table %s %s, chain %s has policy drop on the forward hook. "+
			"An accept in netlab's table does not override a drop in another table, so the lab's forwarded traffic "+
			"(between its bridges, and to and from the outside) will be dropped there. netlab does not edit other tables: "+
			"add accept rules for the lab's interfaces to that chain (for Docker: iptables -I DOCKER-USER -i BRIDGE -j ACCEPT "+
			"and iptables -I DOCKER-USER -o BRIDGE -j ACCEPT), or stop the tool that owns it.",
			ns, familyName(c.Table.Family), c.Table.Name, c.Name))
	}
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return strconv.Itoa(int(f))
}
