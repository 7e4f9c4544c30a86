package kernel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"

	"netlab/reconcile"
)

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
	if s.Data != nil {
		if set.DataType, err = setType(s.Data); err != nil {
			return nil, nil, fmt.Errorf("map %s: %w", s.Name, err)
		}
		set.IsMap = true
	}
	var elements []nftables.SetElement
	for _, e := range s.Elements {
		var el nftables.SetElement
		if el.Key, err = encodeValues(s.Key, e.Key); err == nil && s.Data != nil {
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
			if v.Addr.IsValid() {
				return nil, fmt.Errorf("%q is not an %s", v.Text(), t.Text())
			}
			b = binaryutil.BigEndian.PutUint16(v.Port)
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
		if t == reconcile.TypeInetService {
			out = append(out, reconcile.PortValue(binaryutil.BigEndian.Uint16(b[:2])))
		} else {
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

// observeSets reads the sets of the lab's table back into the model; a set
// netlab could not have written reads as one of a type netlab does not write,
// which differs from any the lab wants.
func observeSets(conn *nftables.Conn, table *nftables.Table) ([]*reconcile.Set, error) {
	sets, err := conn.GetSets(table)
	if err != nil {
		return nil, err
	}
	var out []*reconcile.Set
	for _, s := range sets {
		rs := &reconcile.Set{Name: s.Name, Key: typesOf(s.KeyType.GetNFTMagic())}
		if s.IsMap {
			rs.Data = typesOf(s.DataType.GetNFTMagic())
		}
		elements, err := conn.GetSetElements(s)
		if err != nil {
			return nil, err
		}
		for _, e := range elements {
			var el reconcile.Element
			var ok bool
			el.Key, ok = decodeValues(rs.Key, e.Key)
			if ok && s.IsMap {
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
