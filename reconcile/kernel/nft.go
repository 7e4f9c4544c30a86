package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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
			Hooknum: hook(c.Hook), Priority: &prio, Policy: &accept,
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

// deleteTable removes the lab's table; an absent one is fine.
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

// setTypes are the element types a lab's sets use, by nft's name.
var setTypes = map[string]nftables.SetDatatype{
	"ipv4_addr":    nftables.TypeIPAddr,
	"ipv6_addr":    nftables.TypeIP6Addr,
	"inet_service": nftables.TypeInetService,
}

// setType turns nft's name of a type, one or a concatenation ("ipv4_addr .
// inet_service"), into the library's.
func setType(name string) (nftables.SetDatatype, error) {
	var parts []nftables.SetDatatype
	for _, n := range strings.Split(name, " . ") {
		t, ok := setTypes[n]
		if !ok {
			return nftables.SetDatatype{}, fmt.Errorf("unknown set type %q", n)
		}
		parts = append(parts, t)
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	return nftables.ConcatSetType(parts...)
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
	if s.Data != "" {
		if set.DataType, err = setType(s.Data); err != nil {
			return nil, nil, fmt.Errorf("map %s: %w", s.Name, err)
		}
		set.IsMap = true
	}
	var elements []nftables.SetElement
	for _, e := range s.Elements {
		k, v, _ := strings.Cut(e, " : ")
		var el nftables.SetElement
		if el.Key, err = elementBytes(s.Key, k); err == nil && s.Data != "" {
			el.Val, err = elementBytes(s.Data, v)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("set %s: element %q: %w", s.Name, e, err)
		}
		elements = append(elements, el)
	}
	return set, elements, nil
}

// elementBytes encodes a value of a type as nft does: each field in network
// order, a concatenation's fields each padded to 4 bytes.
func elementBytes(typ, text string) ([]byte, error) {
	types, values := strings.Split(typ, " . "), strings.Split(text, " . ")
	if len(types) != len(values) {
		return nil, fmt.Errorf("%d values for the type %q", len(values), typ)
	}
	var out []byte
	for i, t := range types {
		var b []byte
		switch t {
		case "ipv4_addr", "ipv6_addr":
			a, err := netip.ParseAddr(values[i])
			if err != nil || (t == "ipv4_addr") != a.Is4() {
				return nil, fmt.Errorf("bad %s %q", t, values[i])
			}
			b = a.AsSlice()
		case "inet_service":
			p, err := strconv.ParseUint(values[i], 10, 16)
			if err != nil {
				return nil, fmt.Errorf("bad port %q", values[i])
			}
			b = binaryutil.BigEndian.PutUint16(uint16(p))
		default:
			return nil, fmt.Errorf("unknown set type %q", t)
		}
		if len(types) > 1 && len(b)%4 != 0 {
			b = append(b, make([]byte, 4-len(b)%4)...)
		}
		out = append(out, b...)
	}
	return out, nil
}

// elementText decodes what elementBytes encodes; ok is false for bytes that do
// not fit the type.
func elementText(typ string, b []byte) (string, bool) {
	types := strings.Split(typ, " . ")
	var out []string
	for _, t := range types {
		size := map[string]int{"ipv4_addr": 4, "ipv6_addr": 16, "inet_service": 2}[t]
		if size == 0 || len(b) < size {
			return "", false
		}
		switch t {
		case "inet_service":
			out = append(out, strconv.Itoa(int(binary.BigEndian.Uint16(b))))
		default:
			a, _ := netip.AddrFromSlice(b[:size])
			out = append(out, a.String())
		}
		if len(types) > 1 {
			size = (size + 3) / 4 * 4
		}
		b = b[min(size, len(b)):]
	}
	return strings.Join(out, " . "), len(b) == 0
}

// observeSets reads the sets of the lab's table back into the model; a set
// netlab could not have written reads as one of unknown type, which differs
// from any the lab wants.
func observeSets(conn *nftables.Conn, table *nftables.Table) ([]*reconcile.Set, error) {
	sets, err := conn.GetSets(table)
	if err != nil {
		return nil, err
	}
	var out []*reconcile.Set
	for _, s := range sets {
		rs := &reconcile.Set{Name: s.Name, Key: s.KeyType.Name}
		if s.IsMap {
			rs.Data = s.DataType.Name
		}
		elements, err := conn.GetSetElements(s)
		if err != nil {
			return nil, err
		}
		for _, e := range elements {
			text, ok := elementText(rs.Key, e.Key)
			if ok && s.IsMap {
				var v string
				v, ok = elementText(rs.Data, e.Val)
				text += " : " + v
			}
			if !ok {
				text = "<an element netlab did not write>"
			}
			rs.Elements = append(rs.Elements, text)
		}
		slices.Sort(rs.Elements)
		out = append(out, rs)
	}
	slices.SortFunc(out, func(a, b *reconcile.Set) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func hook(name string) *nftables.ChainHook {
	return map[string]*nftables.ChainHook{
		"prerouting":  nftables.ChainHookPrerouting,
		"input":       nftables.ChainHookInput,
		"forward":     nftables.ChainHookForward,
		"output":      nftables.ChainHookOutput,
		"postrouting": nftables.ChainHookPostrouting,
	}[name]
}

func hookName(h *nftables.ChainHook) string {
	if h == nil {
		return ""
	}
	for _, name := range []string{"prerouting", "input", "forward", "output", "postrouting"} {
		if *hook(name) == *h {
			return name
		}
	}
	return strconv.Itoa(int(*h))
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

// observeTable reads the lab's table in a namespace. A rule is recognised as a
// rule of want when its expressions and comment are exactly those netlab writes
// for it at that place; anything else is reported as it is found, so the plan
// shows it and replaces the table.
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
		oc := &reconcile.Chain{Name: c.Name, Type: string(c.Type), Hook: hookName(c.Hooknum)}
		if c.Priority != nil {
			oc.Priority = int(*c.Priority)
		}
		if c.Policy == nil || *c.Policy != nftables.ChainPolicyAccept {
			oc.Rules = append(oc.Rules, &reconcile.Rule{Raw: "<the chain's policy is not accept>"})
		}
		rules, err := conn.GetRules(table, c)
		if err != nil {
			return nil, fmt.Errorf("netns %s: list rules of chain %s: %w", ns, c.Name, err)
		}
		// The chain's desired rules by their expressions and comment, so each rule
		// found is recognised wherever it stands (a reordered chain reads as such).
		wanted := map[string][]*reconcile.Rule{}
		if wc := findChain(want, c.Name); wc != nil {
			for _, w := range wc.Rules {
				if exprs, err := compileRule(w); err == nil {
					if k, ok := ruleKey(exprs, w.Comment); ok {
						wanted[k] = append(wanted[k], w)
					}
				}
			}
		}
		for _, r := range rules {
			if k, ok := ruleKey(r.Exprs, commentOf(r.UserData)); ok && len(wanted[k]) > 0 {
				rule := *wanted[k][0]
				wanted[k] = wanted[k][1:]
				rule.Packets, rule.Bytes = counted(r)
				oc.Rules = append(oc.Rules, &rule)
				continue
			}
			// Not the file's: shown as it is, with its handle, so that it reads
			// as what it does and can be found with `nft -a list ruleset`.
			raw := ruleText(r.Exprs)
			if note := commentOf(r.UserData); note != "" {
				raw += fmt.Sprintf(" comment %q", note)
			}
			oc.Rules = append(oc.Rules, &reconcile.Rule{Raw: fmt.Sprintf("%s (handle %d, not in the file)", raw, r.Handle)})
		}
		out.Chains = append(out.Chains, oc)
	}
	slices.SortFunc(out.Chains, func(a, b *reconcile.Chain) int {
		if c := chainRank(a.Name) - chainRank(b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
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

// chainRank orders observed chains like desired ones: the order of the desired
// tables is fixed by reconcile, so sorting by it makes equal tables compare equal.
func chainRank(name string) int {
	for i, n := range []string{"forward", "input", "output", "nat-prerouting", "nat-output", "nat-postrouting"} {
		if n == name {
			return i
		}
	}
	return 100
}

// ruleKey identifies a rule by its expressions as netlink bytes and its comment:
// a rule in the kernel and the rule netlab would write are the same when their
// keys are (counters are zeroed: they count, they do not configure).
func ruleKey(exprs []expr.Any, comment string) (string, bool) {
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
	return b.String() + "\x00" + comment, true
}

// compileRule turns a rule into the expressions nft itself generates for its text,
// so that a table written by `nft -f` (plan -o commands) and one written by
// netlab are the same to the byte. Like nft, it checks a protocol dependency
// (the IP version of an address match, the transport of a port match) once per
// rule, and loads only the bytes a byte-aligned prefix covers.
func compileRule(r *reconcile.Rule) ([]expr.Any, error) {
	var c ruleCompiler
	for _, m := range r.Match {
		if err := c.match(m); err != nil {
			return nil, err
		}
	}
	c.out = append(c.out, &expr.Counter{})
	switch r.Verdict {
	case "accept":
		c.out = append(c.out, &expr.Verdict{Kind: expr.VerdictAccept})
	case "drop":
		c.out = append(c.out, &expr.Verdict{Kind: expr.VerdictDrop})
	case "reject":
		c.out = append(c.out, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	case "masquerade":
		c.out = append(c.out, &expr.Masq{})
	case "snat", "dnat":
		if proto, set, ok := natMap(r.To); ok {
			if err := c.natMap(r, proto, set); err != nil {
				return nil, err
			}
			break
		}
		e, err := compileNAT(r)
		if err != nil {
			return nil, err
		}
		c.out = append(c.out, e...)
	default:
		return nil, fmt.Errorf("unknown verdict %q", r.Verdict)
	}
	return c.out, nil
}

const reg = 1 // every match loads into register 1, as nft does

func cmpReg(op expr.CmpOp, data []byte) *expr.Cmp {
	return &expr.Cmp{Op: op, Register: reg, Data: data}
}

func cmpOp(neg bool) expr.CmpOp {
	if neg {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

// ruleCompiler accumulates a rule's expressions and the protocol dependencies
// already checked.
type ruleCompiler struct {
	out     []expr.Any
	nfproto byte // the IP version checked so far (0: none)
	l4proto byte // the transport protocol checked so far (0: none)
}

func (c *ruleCompiler) add(e ...expr.Any) { c.out = append(c.out, e...) }

func (c *ruleCompiler) needNfproto(p byte) {
	if c.nfproto != p {
		c.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg}, cmpReg(expr.CmpOpEq, []byte{p}))
		c.nfproto = p
	}
}

func (c *ruleCompiler) needL4proto(p byte) {
	if c.l4proto != p {
		c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmpReg(expr.CmpOpEq, []byte{p}))
		c.l4proto = p
	}
}

func (c *ruleCompiler) match(m reconcile.Match) error {
	if strings.HasPrefix(m.Value, "@") {
		return c.lookup(m)
	}
	op := cmpOp(m.Neg)
	switch m.Field {
	case reconcile.FieldIIFName, reconcile.FieldOIFName:
		key := expr.MetaKeyIIFNAME
		if m.Field == reconcile.FieldOIFName {
			key = expr.MetaKeyOIFNAME
		}
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, m.Value)
		c.add(&expr.Meta{Key: key, Register: reg}, cmpReg(op, name))
	case reconcile.FieldIPSaddr, reconcile.FieldIPDaddr, reconcile.FieldIP6Saddr, reconcile.FieldIP6Daddr:
		return c.addr(m)
	case reconcile.FieldL4Proto:
		proto, err := l4proto(m.Value)
		if err != nil {
			return err
		}
		c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmpReg(op, []byte{proto}))
		if !m.Neg {
			c.l4proto = proto
		}
	case reconcile.FieldTCPDport, reconcile.FieldTCPSport, reconcile.FieldUDPDport, reconcile.FieldUDPSport:
		return c.port(m)
	case reconcile.FieldCtState:
		var bits uint32
		for _, s := range strings.Split(m.Value, ",") {
			b, ok := map[string]uint32{"invalid": expr.CtStateBitINVALID, "established": expr.CtStateBitESTABLISHED,
				"related": expr.CtStateBitRELATED, "new": expr.CtStateBitNEW, "untracked": expr.CtStateBitUNTRACKED}[s]
			if !ok {
				return fmt.Errorf("unknown ct state %q", s)
			}
			bits |= b
		}
		zero := binaryutil.NativeEndian.PutUint32(0)
		op := expr.CmpOpNeq // "any of these bits"
		if m.Neg {
			op = expr.CmpOpEq
		}
		c.add(&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: zero},
			cmpReg(op, zero))
	case reconcile.FieldFibDaddrTyp, reconcile.FieldFibSaddrTyp:
		if m.Value != "local" {
			return fmt.Errorf("unsupported fib type %q", m.Value)
		}
		fib := &expr.Fib{Register: reg, ResultADDRTYPE: true}
		if m.Field == reconcile.FieldFibDaddrTyp {
			fib.FlagDADDR = true
		} else {
			fib.FlagSADDR = true
		}
		c.add(fib, cmpReg(op, binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)))
	default:
		return fmt.Errorf("unknown match %q", m.Field)
	}
	return nil
}

// addr matches an address or prefix of the IP header.
func (c *ruleCompiler) addr(m reconcile.Match) error {
	p, err := netip.ParsePrefix(m.Value)
	if err != nil {
		a, err2 := netip.ParseAddr(m.Value)
		if err2 != nil {
			return fmt.Errorf("%s: bad address %q", m.Field, m.Value)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	nfproto, offset, size := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if strings.HasPrefix(m.Field, "ip6") {
		nfproto, offset, size = unix.NFPROTO_IPV6, 8, 16
	}
	if strings.HasSuffix(m.Field, "daddr") {
		offset += size
	}
	c.needNfproto(nfproto)
	value := p.Masked().Addr().AsSlice()
	if p.Bits()%8 == 0 { // only the bytes the prefix covers
		n := uint32(p.Bits() / 8)
		c.add(&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n}, cmpReg(cmpOp(m.Neg), value[:n]))
		return nil
	}
	c.add(&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: size, Mask: netmask(p.Bits(), int(size)), Xor: make([]byte, size)},
		cmpReg(cmpOp(m.Neg), value))
	return nil
}

func netmask(bits, size int) []byte {
	mask := make([]byte, size)
	for i := 0; i < bits; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return mask
}

// lookup matches fields (one, or a concatenation "ip daddr . tcp dport") against
// a named set. Like nft, it checks the protocol dependencies first, then loads
// the fields into consecutive registers (the first into register 1, the next
// ones into the 4-byte registers that follow it) and looks them up.
func (c *ruleCompiler) lookup(m reconcile.Match) error {
	if m.Neg {
		return fmt.Errorf("%s != %s: a negated set lookup is not supported", m.Field, m.Value)
	}
	fields := strings.Split(m.Field, " . ")
	var loads []*expr.Payload
	for _, f := range fields {
		l, err := c.fieldLoad(f)
		if err != nil {
			return err
		}
		loads = append(loads, l)
	}
	words := uint32(0)
	for i, l := range loads {
		l.DestRegister = reg
		if i > 0 {
			l.DestRegister = unix.NFT_REG32_00 + words
		}
		words += (l.Len + 3) / 4
		c.add(l)
	}
	c.add(&expr.Lookup{SourceRegister: reg, SetName: strings.TrimPrefix(m.Value, "@")})
	return nil
}

// fieldLoad checks a field's protocol dependency and returns the load of it.
func (c *ruleCompiler) fieldLoad(field string) (*expr.Payload, error) {
	switch field {
	case reconcile.FieldIPSaddr, reconcile.FieldIPDaddr:
		c.needNfproto(unix.NFPROTO_IPV4)
		offset := uint32(12)
		if field == reconcile.FieldIPDaddr {
			offset = 16
		}
		return &expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}, nil
	case reconcile.FieldTCPDport, reconcile.FieldUDPDport:
		proto, _, _ := strings.Cut(field, " ")
		p, _ := l4proto(proto)
		c.needL4proto(p)
		return &expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, nil
	}
	return nil, fmt.Errorf("a set lookup of %q is not supported", field)
}

// port matches a TCP or UDP port or range: "tcp dport 80" is, to nft, "the
// layer 4 protocol is tcp and the two bytes at offset 2 of its header are 80".
func (c *ruleCompiler) port(m reconcile.Match) error {
	proto, dir, _ := strings.Cut(m.Field, " ")
	p, _ := l4proto(proto)
	offset := uint32(2)
	if dir == "sport" {
		offset = 0
	}
	c.needL4proto(p)
	c.add(&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2})
	first, last, isRange := strings.Cut(m.Value, "-")
	lo, err := strconv.ParseUint(first, 10, 16)
	if err != nil {
		return fmt.Errorf("%s: bad port %q", m.Field, m.Value)
	}
	if !isRange {
		c.add(cmpReg(cmpOp(m.Neg), binaryutil.BigEndian.PutUint16(uint16(lo))))
		return nil
	}
	hi, err := strconv.ParseUint(last, 10, 16)
	if err != nil {
		return fmt.Errorf("%s: bad port range %q", m.Field, m.Value)
	}
	c.add(&expr.Range{Op: cmpOp(m.Neg), Register: reg,
		FromData: binaryutil.BigEndian.PutUint16(uint16(lo)), ToData: binaryutil.BigEndian.PutUint16(uint16(hi))})
	return nil
}

func l4proto(name string) (byte, error) {
	p, ok := map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "icmp": unix.IPPROTO_ICMP, "icmpv6": unix.IPPROTO_ICMPV6}[name]
	if !ok {
		return 0, fmt.Errorf("unknown protocol %q", name)
	}
	return p, nil
}

// natMap recognises a NAT target looked up in a map: "tcp dport map @NAME".
func natMap(to string) (proto, set string, ok bool) {
	head, set, ok := strings.Cut(to, " dport map @")
	if !ok || (head != "tcp" && head != "udp") {
		return "", "", false
	}
	return head, set, true
}

// natMap looks the packet's destination port up in a map whose values are
// "address . port", and translates to them: the address lands in register 1,
// the port in the 4-byte register after it.
func (c *ruleCompiler) natMap(r *reconcile.Rule, proto, set string) error {
	port, err := c.fieldLoad(proto + " dport")
	if err != nil {
		return err
	}
	port.DestRegister = reg
	nat := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg, RegAddrMax: reg,
		RegProtoMin: unix.NFT_REG32_01, RegProtoMax: unix.NFT_REG32_01, Specified: true}
	if r.Verdict == "dnat" {
		nat.Type = expr.NATTypeDestNAT
	}
	c.add(port, &expr.Lookup{SourceRegister: reg, DestRegister: reg, IsDestRegSet: true, SetName: set}, nat)
	return nil
}

// compileNAT loads the target address (and port) into registers and applies
// snat/dnat, the registers' max equal to their min as the kernel reports them.
func compileNAT(r *reconcile.Rule) ([]expr.Any, error) {
	addrText, portText := r.To, ""
	if ap, err := netip.ParseAddrPort(r.To); err == nil {
		addrText, portText = ap.Addr().String(), strconv.Itoa(int(ap.Port()))
	} else if i := strings.LastIndex(r.To, ":"); i > 0 && r.Family == "ip" {
		addrText, portText = r.To[:i], r.To[i+1:] // a port range: 10.0.0.5:80-90
	} else if strings.HasPrefix(r.To, "[") {
		addrText, portText, _ = strings.Cut(strings.TrimPrefix(r.To, "["), "]:")
	}
	addr, err := netip.ParseAddr(addrText)
	if err != nil {
		return nil, fmt.Errorf("%s: bad target %q", r.Verdict, r.To)
	}
	nat := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1}
	if r.Verdict == "dnat" {
		nat.Type = expr.NATTypeDestNAT
	}
	if addr.Is6() {
		nat.Family = unix.NFPROTO_IPV6
	}
	out := []expr.Any{&expr.Immediate{Register: 1, Data: addr.AsSlice()}}
	if portText != "" {
		first, last, isRange := strings.Cut(portText, "-")
		lo, err := strconv.ParseUint(first, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%s: bad target port %q", r.Verdict, r.To)
		}
		out = append(out, &expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(lo))})
		nat.RegProtoMin, nat.RegProtoMax, nat.Specified = 2, 2, true
		if isRange {
			hi, err := strconv.ParseUint(last, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%s: bad target port %q", r.Verdict, r.To)
			}
			out = append(out, &expr.Immediate{Register: 3, Data: binaryutil.BigEndian.PutUint16(uint16(hi))})
			nat.RegProtoMax = 3
		}
	}
	return append(out, nat), nil
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
