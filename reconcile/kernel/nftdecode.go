package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// The rule decoder: the expressions of a rule found in the lab's table, read
// back into the typed rule of the model that compileRule turns into them. It
// knows the shapes nftcompile.go writes (which are nft's own for the same
// text), whoever wrote them: netlab, `nft -f` of `plan -o commands`, or a
// person with `nft add rule`. Anything else is an error: the rule is then
// shown as one netlab cannot read.

// decodeRule reads a rule's expressions, of an inet table, into a rule of the model.
func decodeRule(exprs []expr.Any) (*reconcile.Rule, error) { return decodeIn(0, exprs) }

// decodeIn reads a rule's expressions into a rule of the model, for a table
// whose family implies nfproto (see compileIn).
func decodeIn(nfproto byte, exprs []expr.Any) (*reconcile.Rule, error) {
	d := &ruleDecoder{exprs: exprs, l4match: -1, rule: &reconcile.Rule{}, nfproto: nfproto}
	for {
		e := d.next()
		if e == nil {
			return nil, fmt.Errorf("no counter")
		}
		if _, ok := e.(*expr.Counter); ok {
			break
		}
		if d.vmapNext(e) { // a verdict map: Docker's rules of one, without a counter
			d.i--
			d.rule.NoCounter = true
			break
		}
		if err := d.match(e); err != nil {
			return nil, err
		}
	}
	if d.nfprotoPending {
		return nil, fmt.Errorf("a protocol check no match needs")
	}
	if err := d.verdict(); err != nil {
		return nil, err
	}
	if d.i != len(exprs) {
		return nil, fmt.Errorf("%T after the verdict", exprs[d.i])
	}
	return d.rule, nil
}

// ruleDecoder walks a rule's expressions, keeping the protocol checks seen: nft
// writes them before the matches that need them and does not print them.
type ruleDecoder struct {
	exprs []expr.Any
	i     int
	rule  *reconcile.Rule

	nfproto        byte // the IP version checked (0: none)
	nfprotoPending bool // checked, and no match has used it yet
	l4proto        byte // the transport protocol checked (0: none)
	l4match        int  // the index in rule.Match of the check as a match of its own, while no port uses it
}

// next returns the next expression, or nil at the end.
func (d *ruleDecoder) next() expr.Any {
	if d.i >= len(d.exprs) {
		return nil
	}
	d.i++
	return d.exprs[d.i-1]
}

// peek returns the next expression without taking it, or nil at the end.
func (d *ruleDecoder) peek() expr.Any {
	if d.i >= len(d.exprs) {
		return nil
	}
	return d.exprs[d.i]
}

// cmp takes the comparison of register 1 that follows a load.
func (d *ruleDecoder) cmp() (*expr.Cmp, error) {
	c, ok := d.next().(*expr.Cmp)
	if !ok || c.Register != reg || (c.Op != expr.CmpOpEq && c.Op != expr.CmpOpNeq) {
		return nil, fmt.Errorf("a load without a comparison")
	}
	return c, nil
}

func (d *ruleDecoder) add(m reconcile.Match) { d.rule.Match = append(d.rule.Match, m) }

// useNfproto notes that a match needs the IP version checked before it.
func (d *ruleDecoder) useNfproto(p byte) error {
	if d.nfproto != p {
		return fmt.Errorf("an IP header field without its protocol check")
	}
	d.nfprotoPending = false
	return nil
}

// useL4proto notes that a match needs the transport protocol checked before
// it: the check is then a dependency, not a match of its own.
func (d *ruleDecoder) useL4proto() (reconcile.Proto, error) {
	p := reconcile.Proto(d.l4proto)
	if p != reconcile.ProtoTCP && p != reconcile.ProtoUDP {
		return 0, fmt.Errorf("a transport header field without its protocol check")
	}
	if d.l4match >= 0 {
		d.rule.Match = slices.Delete(d.rule.Match, d.l4match, d.l4match+1)
		d.l4match = -1
	}
	return p, nil
}

// match decodes the match that starts with e: one case per kind of load.
func (d *ruleDecoder) match(e expr.Any) error {
	switch e := e.(type) {
	case *expr.Meta:
		return d.meta(e)
	case *expr.Payload:
		d.i--
		return d.payload()
	case *expr.Ct:
		return d.ctState(e)
	case *expr.Fib:
		return d.fib(e)
	}
	return fmt.Errorf("a %T netlab does not write", e)
}

// meta decodes an interface name match or a protocol check.
func (d *ruleDecoder) meta(m *expr.Meta) error {
	if m.Register != reg {
		return fmt.Errorf("a meta load into register %d", m.Register)
	}
	c, err := d.cmp()
	if err != nil {
		return err
	}
	neg := c.Op == expr.CmpOpNeq
	switch m.Key {
	case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
		if len(c.Data) != unix.IFNAMSIZ {
			return fmt.Errorf("an interface name of %d bytes", len(c.Data))
		}
		name := string(bytes.TrimRight(c.Data, "\x00"))
		if m.Key == expr.MetaKeyIIFNAME {
			d.add(reconcile.IIFName{Name: name, Neg: neg})
		} else {
			d.add(reconcile.OIFName{Name: name, Neg: neg})
		}
	case expr.MetaKeyNFPROTO:
		if neg || len(c.Data) != 1 || d.nfprotoPending {
			return fmt.Errorf("a protocol check netlab does not write")
		}
		d.nfproto, d.nfprotoPending = c.Data[0], true
	case expr.MetaKeyL4PROTO:
		if len(c.Data) != 1 {
			return fmt.Errorf("a protocol of %d bytes", len(c.Data))
		}
		d.add(reconcile.L4ProtoMatch{Proto: reconcile.Proto(c.Data[0]), Neg: neg})
		if !neg { // also the check a later port match needs
			d.l4proto, d.l4match = c.Data[0], len(d.rule.Match)-1
		}
	default:
		return fmt.Errorf("a meta load of key %d", m.Key)
	}
	return nil
}

// payload decodes the match that starts with loads of packet fields: a set
// lookup when loads end in one, else an address or a port match.
func (d *ruleDecoder) payload() error {
	var loads []*expr.Payload
	for {
		p, ok := d.peek().(*expr.Payload)
		if !ok {
			break
		}
		loads = append(loads, p)
		d.i++
	}
	if l, ok := d.peek().(*expr.Lookup); ok && !l.IsDestRegSet {
		d.i++
		return d.lookup(loads, l)
	}
	if len(loads) != 1 || loads[0].DestRegister != reg {
		return fmt.Errorf("loads netlab does not write")
	}
	if loads[0].Base == expr.PayloadBaseTransportHeader {
		return d.port(loads[0])
	}
	return d.addr(loads[0])
}

// addrField finds which address of which IP header a load reads, given the
// IP version checked.
func (d *ruleDecoder) addrField(p *expr.Payload) (reconcile.Dir, int, error) {
	for _, is4 := range []bool{true, false} {
		for _, dir := range []reconcile.Dir{reconcile.Src, reconcile.Dst} {
			nfproto, offset, size := addrHeader(is4, dir)
			if p.Base == expr.PayloadBaseNetworkHeader && p.Offset == offset && p.Len <= size && d.useNfproto(nfproto) == nil {
				return dir, int(size), nil
			}
		}
	}
	return 0, 0, fmt.Errorf("a network header load netlab does not write")
}

// addr decodes an address or prefix match: the load of the bytes the prefix
// covers, or of the whole address and a mask.
func (d *ruleDecoder) addr(p *expr.Payload) error {
	dir, size, err := d.addrField(p)
	if err != nil {
		return err
	}
	ones := int(p.Len) * 8
	if b, ok := d.peek().(*expr.Bitwise); ok {
		d.i++
		if int(p.Len) != size || !bytes.Equal(b.Mask, netmask(maskOnes(b.Mask), size)) || b.SourceRegister != reg || b.DestRegister != reg {
			return fmt.Errorf("a mask netlab does not write")
		}
		ones = maskOnes(b.Mask)
	}
	c, err := d.cmp()
	if err != nil {
		return err
	}
	if len(c.Data) != int(p.Len) {
		return fmt.Errorf("an address of %d bytes", len(c.Data))
	}
	full := make([]byte, size)
	copy(full, c.Data)
	a, _ := netip.AddrFromSlice(full)
	d.add(reconcile.AddrMatch{Dir: dir, Prefix: netip.PrefixFrom(a, ones), Neg: c.Op == expr.CmpOpNeq})
	return nil
}

func maskOnes(mask []byte) int {
	n := 0
	for _, b := range mask {
		n += bits.OnesCount8(b)
	}
	return n
}

// portDir finds which port of the transport header a load reads.
func portDir(p *expr.Payload) (reconcile.Dir, bool) {
	for _, dir := range []reconcile.Dir{reconcile.Src, reconcile.Dst} {
		if p.Base == expr.PayloadBaseTransportHeader && p.Offset == portOffset(dir) && p.Len == 2 {
			return dir, true
		}
	}
	return 0, false
}

// port decodes a port or port range match.
func (d *ruleDecoder) port(p *expr.Payload) error {
	dir, ok := portDir(p)
	if !ok {
		return fmt.Errorf("a transport header load netlab does not write")
	}
	proto, err := d.useL4proto()
	if err != nil {
		return err
	}
	m := reconcile.PortMatch{Proto: proto, Dir: dir}
	switch e := d.next().(type) {
	case *expr.Cmp:
		if e.Register != reg || len(e.Data) != 2 || (e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq) {
			return fmt.Errorf("a port comparison netlab does not write")
		}
		m.First, m.Neg = binary.BigEndian.Uint16(e.Data), e.Op == expr.CmpOpNeq
		m.Last = m.First
	case *expr.Range:
		if e.Register != reg || len(e.FromData) != 2 || len(e.ToData) != 2 || (e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq) {
			return fmt.Errorf("a port range netlab does not write")
		}
		m.First, m.Last, m.Neg = binary.BigEndian.Uint16(e.FromData), binary.BigEndian.Uint16(e.ToData), e.Op == expr.CmpOpNeq
	default:
		return fmt.Errorf("a port load without a comparison")
	}
	d.add(m)
	return nil
}

// field decodes one load of a set lookup.
func (d *ruleDecoder) field(p *expr.Payload) (reconcile.Field, error) {
	if dir, ok := portDir(p); ok {
		proto, err := d.useL4proto()
		return reconcile.Field{Proto: proto, Dir: dir}, err
	}
	dir, size, err := d.addrField(p)
	if err != nil || size != 4 || p.Len != 4 {
		return reconcile.Field{}, fmt.Errorf("a set lookup of a field netlab does not write")
	}
	return reconcile.Field{Dir: dir}, nil
}

// lookup decodes a set lookup of fields loaded into consecutive registers.
func (d *ruleDecoder) lookup(loads []*expr.Payload, l *expr.Lookup) error {
	m := reconcile.SetLookup{Set: l.SetName}
	for _, p := range loads {
		f, err := d.field(p)
		if err != nil {
			return err
		}
		m.Fields = append(m.Fields, f)
	}
	if len(loads) == 0 || l.SourceRegister != reg || l.Invert {
		return fmt.Errorf("a set lookup netlab does not write")
	}
	d.add(m)
	return nil
}

// ctState decodes "any of these states" (or, negated, none of them).
func (d *ruleDecoder) ctState(ct *expr.Ct) error {
	b, ok := d.next().(*expr.Bitwise)
	if ct.Key != expr.CtKeySTATE || ct.Register != reg || !ok || len(b.Mask) != 4 {
		return fmt.Errorf("a conntrack match netlab does not write")
	}
	c, err := d.cmp()
	if err != nil {
		return err
	}
	d.add(reconcile.CtStateMatch{States: reconcile.CtState(binary.NativeEndian.Uint32(b.Mask)), Neg: c.Op == expr.CmpOpEq})
	return nil
}

// fib decodes "the source (destination) address is local".
func (d *ruleDecoder) fib(f *expr.Fib) error {
	c, err := d.cmp()
	if err != nil {
		return err
	}
	if !f.ResultADDRTYPE || f.FlagSADDR == f.FlagDADDR || len(c.Data) != 4 || binary.NativeEndian.Uint32(c.Data) != unix.RTN_LOCAL {
		return fmt.Errorf("a fib match netlab does not write")
	}
	dir := reconcile.Src
	if f.FlagDADDR {
		dir = reconcile.Dst
	}
	d.add(reconcile.FibLocal{Dir: dir, Neg: c.Op == expr.CmpOpNeq})
	return nil
}

// verdict decodes what the rule does, after its counter: one case per
// reconcile.Verdict.
func (d *ruleDecoder) verdict() error {
	r := d.rule
	switch e := d.next().(type) {
	case *expr.Verdict:
		switch e.Kind {
		case expr.VerdictAccept:
			r.Verdict = reconcile.VerdictAccept
		case expr.VerdictDrop:
			r.Verdict = reconcile.VerdictDrop
		case expr.VerdictJump:
			r.Verdict, r.Chain = reconcile.VerdictJump, e.Chain
		case expr.VerdictReturn:
			r.Verdict = reconcile.VerdictReturn
		default:
			return fmt.Errorf("a verdict netlab does not write")
		}
	case *expr.Reject:
		r.Verdict = reconcile.VerdictReject
	case *expr.Masq:
		r.Verdict = reconcile.VerdictMasquerade
	case *expr.Immediate:
		d.i--
		return d.nat()
	case *expr.Payload:
		d.i--
		return d.natMap()
	case *expr.Meta:
		if !d.vmapNext(e) {
			return fmt.Errorf("a meta load netlab does not write after the counter")
		}
		d.i--
		return d.vmap()
	default:
		return fmt.Errorf("a %T netlab does not write", e)
	}
	return nil
}

// vmapNext says whether e, just taken, starts a verdict map lookup: an
// interface name loaded and looked up into the verdict register.
func (d *ruleDecoder) vmapNext(e expr.Any) bool {
	m, ok := e.(*expr.Meta)
	l, isLookup := d.peek().(*expr.Lookup)
	return ok && isLookup && (m.Key == expr.MetaKeyIIFNAME || m.Key == expr.MetaKeyOIFNAME) &&
		l.IsDestRegSet && l.DestRegister == 0
}

// vmap decodes "iifname vmap @NAME" / "oifname vmap @NAME".
func (d *ruleDecoder) vmap() error {
	m := d.next().(*expr.Meta)
	l := d.next().(*expr.Lookup)
	if m.Register != reg || l.SourceRegister != reg || l.Invert {
		return fmt.Errorf("a verdict map netlab does not write")
	}
	d.rule.Verdict = reconcile.VerdictVmap
	d.rule.Vmap = reconcile.Vmap{Out: m.Key == expr.MetaKeyOIFNAME, Map: l.SetName}
	return nil
}

// natVerdict is the verdict of a NAT expression.
func natVerdict(n *expr.NAT) (reconcile.Verdict, error) {
	switch n.Type {
	case expr.NATTypeSourceNAT:
		return reconcile.VerdictSNAT, nil
	case expr.NATTypeDestNAT:
		return reconcile.VerdictDNAT, nil
	}
	return 0, fmt.Errorf("a NAT netlab does not write")
}

// nat decodes snat/dnat to an address and a port or port range loaded as
// immediates into registers 1, 2 and 3.
func (d *ruleDecoder) nat() error {
	regs := map[uint32][]byte{}
	for {
		im, ok := d.peek().(*expr.Immediate)
		if !ok {
			break
		}
		regs[im.Register] = im.Data
		d.i++
	}
	n, ok := d.next().(*expr.NAT)
	if !ok || n.RegAddrMin != 1 {
		return fmt.Errorf("immediates without a NAT")
	}
	var err error
	if d.rule.Verdict, err = natVerdict(n); err != nil {
		return err
	}
	to := &d.rule.NAT
	if to.Addr, ok = netip.AddrFromSlice(regs[1]); !ok {
		return fmt.Errorf("a NAT address of %d bytes", len(regs[1]))
	}
	if n.RegProtoMin != 0 {
		lo, hi := regs[n.RegProtoMin], regs[n.RegProtoMax]
		if len(lo) != 2 || len(hi) != 2 {
			return fmt.Errorf("a NAT port netlab does not write")
		}
		to.First, to.Last = binary.BigEndian.Uint16(lo), binary.BigEndian.Uint16(hi)
	}
	return nil
}

// natMap decodes snat/dnat to the address and port a map gives for the
// packet's destination port.
func (d *ruleDecoder) natMap() error {
	p := d.next().(*expr.Payload)
	if dir, ok := portDir(p); !ok || dir != reconcile.Dst || p.DestRegister != reg {
		return fmt.Errorf("a NAT map of a field netlab does not write")
	}
	proto, err := d.useL4proto()
	if err != nil {
		return err
	}
	l, ok := d.next().(*expr.Lookup)
	if !ok || !l.IsDestRegSet || l.SourceRegister != reg || l.DestRegister != reg {
		return fmt.Errorf("a NAT map netlab does not write")
	}
	n, ok := d.next().(*expr.NAT)
	if !ok || n.RegAddrMin != reg {
		return fmt.Errorf("a NAT map without a NAT")
	}
	if d.rule.Verdict, err = natVerdict(n); err != nil {
		return err
	}
	d.rule.NAT = reconcile.NATTarget{Map: l.SetName, MapProto: proto}
	return nil
}
