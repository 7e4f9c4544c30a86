package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// nftConn returns the nftables connection of a namespace, opening it on first
// use; it stays open until done is called.
// A table is replaced in one transaction, sent as one message and answered with
// one acknowledgement per rule: the default socket buffers (about 200 KiB) hold
// some hundreds of rules. It asks for 4 MiB each way (the kernel caps them at
// net.core.wmem_max/rmem_max).
func (d *Driver) nftConn(ns string) (conn *nftables.Conn, done func(), err error) {
	h, release, err := d.use(ns)
	if err != nil {
		return nil, nil, err
	}
	// One user at a time: two actions of a phase in one namespace (Docker's
	// ip and ip6 tables, the lab's table beside the iptables layout) would
	// otherwise queue into one batch, and one's Flush would commit the other's
	// half-built transaction or take its error.
	h.nftMu.Lock()
	var once sync.Once
	done = func() { once.Do(func() { h.nftMu.Unlock(); release() }) }
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nft == nil {
		bigBuffer := func(c *netlink.Conn) error {
			if err := c.SetWriteBuffer(4 << 20); err != nil {
				return err
			}
			return c.SetReadBuffer(4 << 20)
		}
		h.nft, err = nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(h.fd)), nftables.WithSockOptions(bigBuffer))
		if err != nil {
			done()
			return nil, nil, fmt.Errorf("netns %s: open nftables: %w", ns, err)
		}
		d.grew(h)
	}
	return h.nft, done, nil
}

// hasTable reports whether a namespace holds an inet table of that name.
//
// Equivalent to: nft list tables inet
func (d *Driver) hasTable(ns, name string) (bool, error) {
	rows, err := d.listTables(ns, unix.NFPROTO_INET)
	return slices.ContainsFunc(rows, func(r tableRow) bool { return r.name == name }), err
}

// tableRow is a table as the kernel lists it: its family, name and userdata
// (where netlab marks Docker's tables as a lab's, see nftables.go).
type tableRow struct {
	family   byte
	name     string
	userdata []byte
}

// nftaTableUserdata is NFTA_TABLE_USERDATA (x/sys/unix does not name it).
const nftaTableUserdata = 6

// listTables lists a namespace's tables of a family (of every family:
// unix.NFPROTO_UNSPEC), with one dump on the namespace's plain nfnetlink socket.
func (d *Driver) listTables(ns string, family byte) ([]tableRow, error) {
	h, done, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := retryDump(func() ([]tableRow, error) {
		req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETTABLE, unix.NLM_F_DUMP)
		req.AddData(nfgenmsg{family: family})
		var rows []tableRow
		err := h.nf.request(req, func(m []byte) error {
			if len(m) < 4 {
				return nil
			}
			attrs, err := nl.ParseRouteAttr(m[4:])
			row := tableRow{family: m[0]}
			for _, a := range attrs {
				switch a.Attr.Type {
				case unix.NFTA_TABLE_NAME:
					row.name = string(trimNul(a.Value))
				case nftaTableUserdata:
					row.userdata = slices.Clone(a.Value)
				}
			}
			rows = append(rows, row)
			return err
		})
		return rows, err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: list nftables tables: %w", ns, err)
	}
	return rows, nil
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
	conn, done, err := d.nftConn(t.NS)
	if err != nil {
		return err
	}
	defer done()
	exists, err := d.hasTable(t.NS, t.Name)
	if err != nil {
		return err
	}
	if exists {
		conn.DelTable(labTable(t.Name))
	}
	if err := addContents(conn, conn.AddTable(labTable(t.Name)), t, 0); err != nil {
		return err
	}
	start := time.Now()
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("netns %s: replace table inet %s: %w", t.NS, t.Name, err)
	}
	d.log.Debug("nft transaction", "netns", t.NS, "table", t.Name, "rules", t.RuleCount(), "took", time.Since(start))
	return nil
}

// addContents adds a table's sets, chains and rules to the connection's
// batch; nfproto is what the table's family implies (see compileIn).
func addContents(conn *nftables.Conn, table *nftables.Table, t *reconcile.Table, nfproto byte) error {
	// The chains first, as nft declares them: map elements and rules jump to them.
	accept := nftables.ChainPolicyAccept
	chains := make([]*nftables.Chain, len(t.Chains))
	for i, c := range t.Chains {
		chain := &nftables.Chain{Name: c.Name, Table: table} // no hook: a regular chain
		if c.Hook != "" {
			prio := nftables.ChainPriority(c.Priority)
			chain.Type, chain.Hooknum, chain.Priority, chain.Policy = nftables.ChainType(c.Type), hooks[c.Hook], &prio, &accept
		}
		chains[i] = conn.AddChain(chain)
	}
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
	for i, c := range t.Chains {
		for _, r := range c.Rules {
			exprs, err := compileIn(nfproto, r)
			if err != nil {
				return fmt.Errorf("netns %s: table %s: chain %s: %w", t.NS, t.Name, c.Name, err)
			}
			conn.AddRule(&nftables.Rule{Table: table, Chain: chains[i], Exprs: exprs, UserData: comment(r.Comment)})
		}
	}
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
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return err
	}
	defer done()
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
	s, _ := userdataString(ud, userdata.TypeComment)
	return strings.TrimRight(s, "\x00")
}

// observeTable reads the lab's table in a namespace back into the model.
func (d *Driver) observeTable(ns, name string, want *reconcile.Table) (*reconcile.Table, error) {
	if ok, err := d.hasTable(ns, name); err != nil || !ok {
		return nil, err
	}
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	out := &reconcile.Table{NS: ns, Name: name}
	if err := d.readContents(conn, labTable(name), out, want, 0); err != nil {
		return nil, err
	}
	out.SortChains()
	return out, nil
}

// readContents reads a table's sets, and its chains in the kernel's order,
// into out; nfproto is what the table's family implies (see compileIn).
func (d *Driver) readContents(conn *nftables.Conn, table *nftables.Table, out, want *reconcile.Table, nfproto byte) error {
	chains, err := conn.ListChainsOfTableFamily(table.Family)
	if err != nil {
		return fmt.Errorf("netns %s: list nftables chains: %w", out.NS, err)
	}
	if out.Sets, err = d.observeSets(conn, table, out.NS); err != nil {
		return fmt.Errorf("netns %s: list nftables sets: %w", out.NS, err)
	}
	for _, c := range chains {
		if c.Table.Name != table.Name {
			continue
		}
		rules, err := conn.GetRules(table, c)
		if err != nil {
			return fmt.Errorf("netns %s: list rules of chain %s: %w", out.NS, c.Name, err)
		}
		out.Chains = append(out.Chains, observeChain(c, rules, findChain(want, c.Name), nfproto))
	}
	return nil
}

// observeChain decodes a chain's rules. A rule is the file's when it decodes
// into a rule of want at that place, which netlab would write with exactly the
// expressions found; anything else is reported as it is found, with its
// handle, so the plan shows it and replaces the table.
func observeChain(c *nftables.Chain, rules []*nftables.Rule, want *reconcile.Chain, nfproto byte) *reconcile.Chain {
	oc := &reconcile.Chain{Name: c.Name, Type: reconcile.ChainType(c.Type), Hook: hookOf(c.Hooknum)}
	if c.Priority != nil {
		oc.Priority = int(*c.Priority)
	}
	if c.Hooknum != nil && (c.Policy == nil || *c.Policy != nftables.ChainPolicyAccept) {
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
		rule, err := decodeIn(nfproto, r.Exprs)
		if err == nil {
			rule.Comment = note
			if wanted[rule.Text()] > 0 && writesAsFound(nfproto, rule, r.Exprs) {
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
			raw = rule.StatementIn(familyOf(nfproto))
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
func writesAsFound(nfproto byte, r *reconcile.Rule, found []expr.Any) bool {
	exprs, err := compileIn(nfproto, r)
	if err != nil {
		return false
	}
	a, okA := exprsKey(nftables.TableFamilyINet, exprs)
	b, okB := exprsKey(nftables.TableFamilyINet, found)
	return okA && okB && a == b
}

// exprsKey is a rule's expressions as netlink bytes (for a table of that
// family), counters zeroed.
func exprsKey(family nftables.TableFamily, exprs []expr.Any) (string, bool) {
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
		m, err := expr.Marshal(byte(family), e)
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
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return nil, err
	}
	defer done()
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

// Sets and maps of the lab's table: their types and their elements, encoded
// as nft encodes them and decoded back into the same typed values.

// setType is the library's type for one of the model's types, a single one or
// a concatenation; the magic number is nft's, so that `nft list` names it.
func setType(types []reconcile.DataType) (nftables.SetDatatype, error) {
	var parts []nftables.SetDatatype
	for _, t := range types {
		if t.Size() == 0 {
			return nftables.SetDatatype{}, fmt.Errorf("unknown set type %s", t.Text())
		}
		dt := nftables.SetDatatype{Name: t.Text(), Bytes: uint32(t.Size())}
		dt.SetNFTMagic(uint32(t))
		parts = append(parts, dt)
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	return nftables.ConcatSetType(parts...)
}

// typesOf splits nft's number of a (concatenated) type into the model's types:
// a concatenation holds one type per 6 bits, the first one highest.
func typesOf(magic uint32) []reconcile.DataType {
	var out []reconcile.DataType
	for ; magic != 0; magic >>= nftables.SetConcatTypeBits {
		out = append(out, reconcile.DataType(magic&nftables.SetConcatTypeMask))
	}
	slices.Reverse(out)
	return out
}

// compileSet turns a set of the model into the library's, with its elements.
//
// Equivalent to: nft add set|map inet TABLE NAME { type ...; elements = { ... } }
func compileSet(table *nftables.Table, s *reconcile.Set) (*nftables.Set, []nftables.SetElement, error) {
	key, err := setType(s.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	set := &nftables.Set{Table: table, Name: s.Name, KeyType: key, KeyByteOrder: binaryutil.BigEndian}
	if slices.Equal(s.Key, []reconcile.DataType{reconcile.TypeIFName}) {
		set.KeyByteOrder = binaryutil.NativeEndian // as nft: an interface name is a string, in host order
	}
	vmap := isVmap(s)
	switch {
	case vmap:
		set.DataType, set.IsMap = nftables.TypeVerdict, true
	case s.Data != nil:
		if set.DataType, err = setType(s.Data); err != nil {
			return nil, nil, fmt.Errorf("map %s: %w", s.Name, err)
		}
		set.IsMap = true
	}
	var elements []nftables.SetElement
	for _, e := range s.Elements {
		var el nftables.SetElement
		el.Key, err = encodeValues(s.Key, e.Key)
		switch {
		case err == nil && vmap:
			el.VerdictData, err = encodeVerdict(e.Data)
		case err == nil && s.Data != nil:
			el.Val, err = encodeValues(s.Data, e.Data)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("set %s: element %q: %w", s.Name, e.Text(), err)
		}
		elements = append(elements, el)
	}
	return set, elements, nil
}

// encodeValues encodes the fields of a value as nft does: each in network
// order, a concatenation's fields each padded to 4 bytes.
func encodeValues(types []reconcile.DataType, values []reconcile.Value) ([]byte, error) {
	if len(types) != len(values) {
		return nil, fmt.Errorf("%d values for %d types", len(values), len(types))
	}
	var out []byte
	for i, t := range types {
		var b []byte
		v := values[i]
		switch t {
		case reconcile.TypeIPv4Addr, reconcile.TypeIPv6Addr:
			if !v.Addr.IsValid() || (t == reconcile.TypeIPv4Addr) != v.Addr.Is4() {
				return nil, fmt.Errorf("%q is not an %s", v.Text(), t.Text())
			}
			b = v.Addr.AsSlice()
		case reconcile.TypeInetService:
			if v.Addr.IsValid() || v.Name != "" || v.Jump != "" {
				return nil, fmt.Errorf("%q is not an %s", v.Text(), t.Text())
			}
			b = binaryutil.BigEndian.PutUint16(v.Port)
		case reconcile.TypeIFName:
			if v.Name == "" || len(v.Name) >= unix.IFNAMSIZ {
				return nil, fmt.Errorf("%q is not an %s", v.Text(), t.Text())
			}
			b = ifname(v.Name)
		default:
			return nil, fmt.Errorf("unknown set type %s", t.Text())
		}
		if len(types) > 1 && len(b)%4 != 0 {
			b = append(b, make([]byte, 4-len(b)%4)...)
		}
		out = append(out, b...)
	}
	return out, nil
}

// decodeValues decodes what encodeValues encodes; ok is false for bytes that
// do not fit the types.
func decodeValues(types []reconcile.DataType, b []byte) (out []reconcile.Value, ok bool) {
	for _, t := range types {
		size := t.Size()
		if size == 0 || len(b) < size {
			return nil, false
		}
		switch t {
		case reconcile.TypeInetService:
			out = append(out, reconcile.PortValue(binaryutil.BigEndian.Uint16(b[:2])))
		case reconcile.TypeIFName:
			name := string(bytes.TrimRight(b[:size], "\x00"))
			if name == "" || strings.ContainsRune(name, 0) {
				return nil, false
			}
			out = append(out, reconcile.NameValue(name))
		default:
			a, _ := netip.AddrFromSlice(b[:size])
			out = append(out, reconcile.AddrValue(a))
		}
		if len(types) > 1 {
			size = (size + 3) / 4 * 4
		}
		b = b[min(size, len(b)):]
	}
	return out, len(b) == 0
}

// setElements reads the elements of a set. A dump longer than one message is
// paged by position, and the kernel grows a hash set in the background after a
// large insert (as up has just made): if it does so between two pages, they
// miss or repeat elements. Once, under load, a verify read 2580 of 3000
// elements netlab had just written. A set that takes several pages is read
// again until two reads agree in size (five reads at most).
func setElements(conn *nftables.Conn, s *nftables.Set) ([]nftables.SetElement, error) {
	elements, err := conn.GetSetElements(s)
	if err != nil || len(elements) < 100 { // one page holds a few hundred
		return elements, err
	}
	for range 4 {
		again, err := conn.GetSetElements(s)
		if err != nil || len(again) == len(elements) {
			return again, err
		}
		elements = again
	}
	return elements, nil
}

// observeSets reads the sets of a table back into the model; a set netlab
// could not have written reads as one of a type netlab does not write, which
// differs from any the lab wants.
func (d *Driver) observeSets(conn *nftables.Conn, table *nftables.Table, ns string) ([]*reconcile.Set, error) {
	sets, err := conn.GetSets(table)
	if err != nil {
		return nil, err
	}
	var out []*reconcile.Set
	var vmapKeys map[string]uint32
	for _, s := range sets {
		rs := &reconcile.Set{Name: s.Name, Key: typesOf(s.KeyType.GetNFTMagic())}
		vmap := s.IsMap && s.KeyType.GetNFTMagic() == uint32(reconcile.TypeVerdict)
		switch {
		case vmap:
			// The library reads a verdict map's data type into its key type,
			// and loses the key's: the set's own dump has it.
			if vmapKeys == nil {
				if vmapKeys, err = d.setKeyTypes(ns, table); err != nil {
					return nil, err
				}
			}
			rs.Key, rs.Data = typesOf(vmapKeys[s.Name]), []reconcile.DataType{reconcile.TypeVerdict}
		case s.IsMap:
			rs.Data = typesOf(s.DataType.GetNFTMagic())
		}
		elements, err := setElements(conn, s)
		if err != nil {
			return nil, err
		}
		for _, e := range elements {
			var el reconcile.Element
			var ok bool
			el.Key, ok = decodeValues(rs.Key, e.Key)
			switch {
			case ok && vmap:
				el.Data, ok = decodeVerdict(e.Val)
			case ok && s.IsMap:
				el.Data, ok = decodeValues(rs.Data, e.Val)
			}
			if !ok {
				el = reconcile.Element{Raw: "<an element netlab did not write>"}
			}
			rs.Elements = append(rs.Elements, el)
		}
		slices.SortFunc(rs.Elements, func(a, b reconcile.Element) int { return strings.Compare(a.Text(), b.Text()) })
		out = append(out, rs)
	}
	slices.SortFunc(out, func(a, b *reconcile.Set) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
