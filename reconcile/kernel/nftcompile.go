package kernel

import (
	"fmt"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// The rule compiler: a typed rule of the model to the nftables expressions nft
// itself generates for its text, so that a table written by `nft -f` (plan -o
// commands) and one written by netlab are the same to the byte. Like nft, it
// checks a protocol dependency (the IP version of an address match, the
// transport of a port match) once per rule, and loads only the bytes a
// byte-aligned prefix covers. nftdecode.go reads the same shapes back.

const reg = 1 // every match loads into register 1, as nft does

// compileRule turns a rule of an inet table into its expressions.
func compileRule(r *reconcile.Rule) ([]expr.Any, error) { return compileIn(0, r) }

// compileIn turns a rule into its expressions for a table whose family
// implies nfproto (unix.NFPROTO_IPV4 for an ip table, NFPROTO_IPV6 for ip6;
// 0 for inet): nft checks the IP version only where the table does not.
func compileIn(nfproto byte, r *reconcile.Rule) ([]expr.Any, error) {
	return ruleCompiler{nfproto: nfproto}.compile(r)
}

// compile turns a rule into expressions with the compiler's encoding (nft's
// own, or iptables-nft's with xt).
func (c ruleCompiler) compile(r *reconcile.Rule) ([]expr.Any, error) {
	for _, m := range r.Match {
		if err := c.match(m); err != nil {
			return nil, err
		}
	}
	if !r.NoCounter {
		c.add(&expr.Counter{})
	}
	if err := c.verdict(r); err != nil {
		return nil, err
	}
	return c.out, nil
}

// ruleCompiler accumulates a rule's expressions and the protocol dependencies
// already checked.
type ruleCompiler struct {
	out     []expr.Any
	nfproto byte // the IP version checked so far (0: none)
	l4proto byte // the transport protocol checked so far (0: none)
	// xt: iptables-nft's encoding (iptables.go): interface names with their
	// trailing NUL only, and xt compat expressions where iptables-nft has them.
	xt bool
}

func (c *ruleCompiler) add(e ...expr.Any) { c.out = append(c.out, e...) }

func (c *ruleCompiler) needNfproto(p byte) {
	if c.nfproto != p {
		c.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg}, cmpReg(expr.CmpOpEq, []byte{p}))
		c.nfproto = p
	}
}

func (c *ruleCompiler) needL4proto(p reconcile.Proto) {
	if c.l4proto != byte(p) {
		c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmpReg(expr.CmpOpEq, []byte{byte(p)}))
		c.l4proto = byte(p)
	}
}

func cmpReg(op expr.CmpOp, data []byte) *expr.Cmp {
	return &expr.Cmp{Op: op, Register: reg, Data: data}
}

func cmpOp(neg bool) expr.CmpOp {
	if neg {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

// match compiles one match: one case per kind of reconcile.Match.
func (c *ruleCompiler) match(m reconcile.Match) error {
	if c.xt {
		if done, err := c.xtMatch(m); done || err != nil {
			return err
		}
	}
	switch m := m.(type) {
	case reconcile.IIFName:
		c.add(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}, cmpReg(cmpOp(m.Neg), c.ifname(m.Name)))
	case reconcile.OIFName:
		c.add(&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg}, cmpReg(cmpOp(m.Neg), c.ifname(m.Name)))
	case reconcile.AddrMatch:
		return c.addr(m)
	case reconcile.L4ProtoMatch:
		c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmpReg(cmpOp(m.Neg), []byte{byte(m.Proto)}))
		if !m.Neg {
			c.l4proto = byte(m.Proto)
		}
	case reconcile.PortMatch:
		return c.port(m)
	case reconcile.CtStateMatch:
		zero := binaryutil.NativeEndian.PutUint32(0)
		op := expr.CmpOpNeq // "any of these bits"
		if m.Neg {
			op = expr.CmpOpEq
		}
		c.add(&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(uint32(m.States)), Xor: zero},
			cmpReg(op, zero))
	case reconcile.FibLocal:
		fib := &expr.Fib{Register: reg, ResultADDRTYPE: true, FlagDADDR: m.Dir == reconcile.Dst, FlagSADDR: m.Dir == reconcile.Src}
		c.add(fib, cmpReg(cmpOp(m.Neg), binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)))
	case reconcile.SetLookup:
		return c.lookup(m)
	default:
		return fmt.Errorf("no compiler for the match %T", m)
	}
	return nil
}

// ifname is an interface name as the rule compares it: as the kernel does,
// or, in iptables-nft's encoding, its bytes and one NUL.
func (c *ruleCompiler) ifname(name string) []byte {
	if c.xt {
		return append([]byte(name), 0)
	}
	return ifname(name)
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes, zero padded.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// addrHeader is where the IP header holds an address: the protocol, the offset
// and the size.
func addrHeader(is4 bool, dir reconcile.Dir) (nfproto byte, offset, size uint32) {
	nfproto, offset, size = unix.NFPROTO_IPV4, 12, 4
	if !is4 {
		nfproto, offset, size = unix.NFPROTO_IPV6, 8, 16
	}
	if dir == reconcile.Dst {
		offset += size
	}
	return nfproto, offset, size
}

// addr matches an address or prefix of the IP header.
func (c *ruleCompiler) addr(m reconcile.AddrMatch) error {
	if !m.Prefix.IsValid() || (m.Dir != reconcile.Src && m.Dir != reconcile.Dst) {
		return fmt.Errorf("bad address match %q", m.Text())
	}
	p := m.Prefix.Masked()
	nfproto, offset, size := addrHeader(p.Addr().Is4(), m.Dir)
	c.needNfproto(nfproto)
	value := p.Addr().AsSlice()
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

// portOffset is where a TCP or UDP header holds a port.
func portOffset(dir reconcile.Dir) uint32 {
	if dir == reconcile.Src {
		return 0
	}
	return 2
}

// port matches a TCP or UDP port or range: "tcp dport 80" is, to nft, "the
// layer 4 protocol is tcp and the two bytes at offset 2 of its header are 80".
func (c *ruleCompiler) port(m reconcile.PortMatch) error {
	if (m.Proto != reconcile.ProtoTCP && m.Proto != reconcile.ProtoUDP) || m.Last < m.First {
		return fmt.Errorf("bad port match %q", m.Text())
	}
	c.needL4proto(m.Proto)
	c.add(&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: portOffset(m.Dir), Len: 2})
	if m.Last == m.First {
		c.add(cmpReg(cmpOp(m.Neg), binaryutil.BigEndian.PutUint16(m.First)))
		return nil
	}
	c.add(&expr.Range{Op: cmpOp(m.Neg), Register: reg,
		FromData: binaryutil.BigEndian.PutUint16(m.First), ToData: binaryutil.BigEndian.PutUint16(m.Last)})
	return nil
}

// lookup matches fields (one, or a concatenation "ip daddr . tcp dport") against
// a named set. Like nft, it checks the protocol dependencies first, then loads
// the fields into consecutive registers (the first into register 1, the next
// ones into the 4-byte registers that follow it) and looks them up.
func (c *ruleCompiler) lookup(m reconcile.SetLookup) error {
	if len(m.Fields) == 0 {
		return fmt.Errorf("a set lookup of no fields")
	}
	var loads []*expr.Payload
	for _, f := range m.Fields {
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
	c.add(&expr.Lookup{SourceRegister: reg, SetName: m.Set})
	return nil
}

// fieldLoad checks a field's protocol dependency and returns the load of it.
func (c *ruleCompiler) fieldLoad(f reconcile.Field) (*expr.Payload, error) {
	switch f.Proto {
	case 0:
		nfproto, offset, size := addrHeader(true, f.Dir)
		c.needNfproto(nfproto)
		return &expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size}, nil
	case reconcile.ProtoTCP, reconcile.ProtoUDP:
		c.needL4proto(f.Proto)
		return &expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: portOffset(f.Dir), Len: 2}, nil
	}
	return nil, fmt.Errorf("a set lookup of %q is not supported", f.Text())
}

// verdict compiles what the rule does: one case per reconcile.Verdict.
func (c *ruleCompiler) verdict(r *reconcile.Rule) error {
	if c.xt {
		if done, err := c.xtVerdict(r); done || err != nil {
			return err
		}
	}
	switch r.Verdict {
	case reconcile.VerdictAccept:
		c.add(&expr.Verdict{Kind: expr.VerdictAccept})
	case reconcile.VerdictDrop:
		c.add(&expr.Verdict{Kind: expr.VerdictDrop})
	case reconcile.VerdictJump:
		c.add(&expr.Verdict{Kind: expr.VerdictJump, Chain: r.Chain})
	case reconcile.VerdictReturn:
		c.add(&expr.Verdict{Kind: expr.VerdictReturn})
	case reconcile.VerdictReject:
		c.add(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	case reconcile.VerdictMasquerade:
		c.add(&expr.Masq{})
	case reconcile.VerdictVmap:
		key := expr.MetaKeyIIFNAME
		if r.Vmap.Out {
			key = expr.MetaKeyOIFNAME
		}
		// The map's value lands in the verdict register (0).
		c.add(&expr.Meta{Key: key, Register: reg}, &expr.Lookup{SourceRegister: reg, DestRegister: 0, IsDestRegSet: true, SetName: r.Vmap.Map})
	case reconcile.VerdictSNAT, reconcile.VerdictDNAT:
		if r.NAT.Map != "" {
			return c.natMap(r)
		}
		return c.nat(r)
	default:
		return fmt.Errorf("no compiler for the verdict %s", r.Verdict.Text())
	}
	return nil
}

func natType(v reconcile.Verdict) expr.NATType {
	if v == reconcile.VerdictDNAT {
		return expr.NATTypeDestNAT
	}
	return expr.NATTypeSourceNAT
}

// natMap looks the packet's destination port up in a map whose values are
// "address . port", and translates to them: the address lands in register 1,
// the port in the 4-byte register after it.
func (c *ruleCompiler) natMap(r *reconcile.Rule) error {
	port, err := c.fieldLoad(reconcile.Field{Proto: r.NAT.MapProto, Dir: reconcile.Dst})
	if err != nil {
		return err
	}
	port.DestRegister = reg
	nat := &expr.NAT{Type: natType(r.Verdict), Family: unix.NFPROTO_IPV4, RegAddrMin: reg, RegAddrMax: reg,
		RegProtoMin: unix.NFT_REG32_01, RegProtoMax: unix.NFT_REG32_01, Specified: true}
	c.add(port, &expr.Lookup{SourceRegister: reg, DestRegister: reg, IsDestRegSet: true, SetName: r.NAT.Map}, nat)
	return nil
}

// nat loads the target address (and port) into registers and applies
// snat/dnat, the registers' max equal to their min as the kernel reports them.
func (c *ruleCompiler) nat(r *reconcile.Rule) error {
	to := r.NAT
	if !to.Addr.IsValid() || to.Last < to.First {
		return fmt.Errorf("%s: bad target %q", r.Verdict.Text(), to.Text())
	}
	nat := &expr.NAT{Type: natType(r.Verdict), Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1}
	if to.Addr.Is6() {
		nat.Family = unix.NFPROTO_IPV6
	}
	c.add(&expr.Immediate{Register: 1, Data: to.Addr.AsSlice()})
	if to.First != 0 {
		c.add(&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(to.First)})
		nat.RegProtoMin, nat.RegProtoMax, nat.Specified = 2, 2, true
		if to.Last > to.First {
			c.add(&expr.Immediate{Register: 3, Data: binaryutil.BigEndian.PutUint16(to.Last)})
			nat.RegProtoMax = 3
		}
	}
	c.add(nat)
	return nil
}
