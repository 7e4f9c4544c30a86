package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
	"netlab/topology"
)

// The nftables layout in the kernel (reconcile/nftables.go): Docker 29's
// tables ip docker-bridges and ip6 docker-bridges, written with the
// expressions nft writes for Docker's rules, so that `nft list table` prints
// what it prints for dockerd.
//
// Ownership: the name is Docker's, so netlab marks a table it creates as the
// lab's, in the table's userdata ("netlab:LAB", under a type of its own that
// nft does not print). The kernel keeps a table's userdata as long as the
// table, and cannot change it: the table is created once, marked, and its
// contents are replaced in one transaction each time (every rule flushed,
// every set and chain deleted and written again, so that the chains keep
// Docker's order). A table of that name without the lab's mark (a live
// dockerd's, another lab's) is a conflict, reported by plan; `down` deletes
// the table when it is the lab's.

// dockerFamilies are the model's families of Docker's tables and nft's.
var dockerFamilies = map[string]nftables.TableFamily{
	reconcile.FamilyIP:  nftables.TableFamilyIPv4,
	reconcile.FamilyIP6: nftables.TableFamilyIPv6,
}

// nfprotoOf is the IP version a family of Docker's tables implies, as
// compileIn and decodeIn take it (an inet table's: none, 0). nftables numbers
// its table families as netfilter numbers its protocols (NFPROTO_IPV4 is
// TableFamilyIPv4), so the family's number is it.
func nfprotoOf(family string) byte { return byte(dockerFamilies[family]) }

// familyOf is the family of a table whose rules imply nfproto.
func familyOf(nfproto byte) string {
	for f, tf := range dockerFamilies {
		if byte(tf) == nfproto {
			return f
		}
	}
	return reconcile.FamilyInet
}

func dockerTable(family string) *nftables.Table {
	return &nftables.Table{Family: dockerFamilies[family], Name: reconcile.DockerTableName}
}

// tableOwner is the lab whose mark a table's userdata holds ("" none).
func tableOwner(ud []byte) string {
	s, ok := userdataString(ud, markType)
	if !ok || !strings.HasPrefix(s, reconcile.MarkerPrefix) {
		return ""
	}
	lab := strings.TrimPrefix(s, reconcile.MarkerPrefix)
	if topology.CheckLabName(lab) != nil {
		return "" // not a mark netlab writes
	}
	return lab
}

// dockerTables lists Docker's tables in a namespace: family -> owner lab ("" not netlab's).
func (d *Driver) dockerTables(ns string) (map[string]string, error) {
	rows, err := d.listTables(ns, unix.NFPROTO_UNSPEC)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range rows {
		if f := familyOf(r.family); r.name == reconcile.DockerTableName && f != reconcile.FamilyInet {
			out[f] = tableOwner(r.userdata)
		}
	}
	return out, nil
}

// CreateDockerTable creates Docker's table of a family in a namespace, empty
// and marked as the lab's, unless the lab's is there already. A table of that
// name that is not the lab's is an error, and is left alone.
//
// Equivalent to: nft add table FAMILY docker-bridges (with the mark nft
// cannot write)
func (d *Driver) CreateDockerTable(lab, ns, family string) error {
	if _, ok := dockerFamilies[family]; !ok {
		return fmt.Errorf("no table of Docker's in family %q", family)
	}
	tables, err := d.dockerTables(ns)
	if err != nil {
		return err
	}
	if owner, ok := tables[family]; ok {
		if owner == lab {
			return nil
		}
		return fmt.Errorf("netns %s: table %s %s exists and is not lab %s's: nothing was changed", ns, family, reconcile.DockerTableName, lab)
	}
	h, done, err := d.use(ns)
	if err != nil {
		return err
	}
	defer done()
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	req.AddData(nfgenmsg{family: byte(dockerFamilies[family])})
	req.AddData(nl.NewRtAttr(unix.NFTA_TABLE_NAME, nl.ZeroTerminated(reconcile.DockerTableName)))
	req.AddData(nl.NewRtAttr(nftaTableUserdata, userdata.AppendString(nil, markType, reconcile.Marker(lab))))
	if err := h.nf.batch(req); err != nil {
		return fmt.Errorf("netns %s: create table %s %s: %w", ns, family, reconcile.DockerTableName, err)
	}
	return nil
}

// replaceDockerTable writes the contents of one of Docker's tables in one
// transaction: every rule flushed, every set and chain deleted, and the
// table's sets, chains and rules written in the layout's order.
//
// Equivalent to: nft -f SCRIPT (flush table; delete map ...; delete chain ...; table FAMILY docker-bridges { ... })
func (d *Driver) replaceDockerTable(lab string, t *reconcile.Table) error {
	if err := d.CreateDockerTable(lab, t.NS, t.Family); err != nil {
		return err
	}
	conn, done, err := d.nftConn(t.NS)
	if err != nil {
		return err
	}
	defer done()
	table := dockerTable(t.Family)
	chains, err := conn.ListChainsOfTableFamily(table.Family)
	if err != nil {
		return fmt.Errorf("netns %s: list nftables chains: %w", t.NS, err)
	}
	sets, err := conn.GetSets(table)
	if err != nil {
		return fmt.Errorf("netns %s: list nftables sets: %w", t.NS, err)
	}
	conn.FlushTable(table) // the rules first: they refer to the sets and chains
	for _, s := range sets {
		conn.DelSet(s) // then the maps, whose elements jump to chains
	}
	for _, c := range chains {
		if c.Table.Name == table.Name {
			conn.DelChain(c)
		}
	}
	if err := addContents(conn, table, t, nfprotoOf(t.Family)); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("netns %s: write table %s %s: %w", t.NS, t.Family, t.Name, err)
	}
	return nil
}

// deleteDockerTable deletes one of Docker's tables if it is the lab's.
//
// Equivalent to: nft delete table FAMILY docker-bridges
func (d *Driver) deleteDockerTable(lab, ns, family string) error {
	tables, err := d.dockerTables(ns)
	if err != nil {
		return err
	}
	if owner, ok := tables[family]; !ok || owner != lab {
		return nil
	}
	conn, done, err := d.nftConn(ns)
	if err != nil {
		return err
	}
	defer done()
	conn.DelTable(dockerTable(family))
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: delete table %s %s: %w", ns, family, reconcile.DockerTableName, err)
	}
	return nil
}

// observeDockerTables reads Docker's tables in a namespace: the lab's into
// the model, and, where the lab wants one, a table of that name that is not
// the lab's as foreign.
func (d *Driver) observeDockerTables(p *nsPart, ns string, q reconcile.Query) error {
	tables, err := d.dockerTables(ns)
	if err != nil {
		return err
	}
	for _, family := range []string{reconcile.FamilyIP, reconcile.FamilyIP6} {
		owner, ok := tables[family]
		key := reconcile.TableKey{NS: ns, Family: family}
		switch {
		case !ok:
			continue
		case owner != q.Lab:
			if q.DockerTables[key] != nil {
				p.foreignTables = append(p.foreignTables, foreignTable{key, owner})
			}
			continue
		}
		out := &reconcile.Table{NS: ns, Name: reconcile.DockerTableName, Layout: reconcile.LayoutNftables, Family: family}
		conn, done, err := d.nftConn(ns)
		if err != nil {
			return err
		}
		err = d.readContents(conn, dockerTable(family), out, q.DockerTables[key], nfprotoOf(family))
		done()
		if err != nil {
			return err
		}
		p.docker = append(p.docker, out)
	}
	return nil
}

// foreignTable is one of Docker's tables that is not the lab's, and its owner.
type foreignTable struct {
	key   reconcile.TableKey
	owner string
}

// wantsDockerTables says whether the lab wants Docker's tables in a namespace.
func wantsDockerTables(q reconcile.Query, ns string) bool {
	for k := range q.DockerTables {
		if k.NS == ns {
			return true
		}
	}
	return false
}

// isVmap says whether a set is a verdict map.
func isVmap(s *reconcile.Set) bool {
	return slices.Equal(s.Data, []reconcile.DataType{reconcile.TypeVerdict})
}

// encodeVerdict is a verdict map element's value: a jump to a chain.
func encodeVerdict(values []reconcile.Value) (*expr.Verdict, error) {
	if len(values) != 1 || values[0].Jump == "" {
		return nil, fmt.Errorf("a verdict map's value is a jump to a chain, not %q", reconcile.Element{Data: values}.Text())
	}
	return &expr.Verdict{Kind: expr.VerdictJump, Chain: values[0].Jump}, nil
}

// decodeVerdict reads what encodeVerdict encodes, from the attributes of the
// element's verdict (its code and chain); ok is false for any other verdict.
func decodeVerdict(b []byte) (out []reconcile.Value, ok bool) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil, false
	}
	var code uint32
	var chain string
	for _, a := range attrs {
		switch a.Attr.Type &^ unix.NLA_F_NESTED {
		case unix.NFTA_VERDICT_CODE:
			if len(a.Value) == 4 {
				code = binary.BigEndian.Uint32(a.Value)
			}
		case unix.NFTA_VERDICT_CHAIN:
			chain = string(trimNul(a.Value))
		}
	}
	if int32(code) != int32(expr.VerdictJump) || chain == "" {
		return nil, false
	}
	return []reconcile.Value{reconcile.JumpValue(chain)}, true
}

// setKeyTypes reads the key types of a table's sets, by set name, with one
// dump on the namespace's plain nfnetlink socket.
func (d *Driver) setKeyTypes(ns string, table *nftables.Table) (map[string]uint32, error) {
	h, done, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	return retryDumpMap(func() (map[string]uint32, error) {
		req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETSET, unix.NLM_F_DUMP)
		req.AddData(nfgenmsg{family: byte(table.Family)})
		req.AddData(nl.NewRtAttr(unix.NFTA_SET_TABLE, nl.ZeroTerminated(table.Name)))
		out := map[string]uint32{}
		err := h.nf.request(req, func(m []byte) error {
			if len(m) < 4 {
				return nil
			}
			attrs, err := nl.ParseRouteAttr(m[4:])
			var name, owner string
			var key uint32
			for _, a := range attrs {
				switch a.Attr.Type {
				case unix.NFTA_SET_TABLE:
					owner = string(trimNul(a.Value))
				case unix.NFTA_SET_NAME:
					name = string(trimNul(a.Value))
				case unix.NFTA_SET_KEY_TYPE:
					if len(a.Value) == 4 {
						key = binary.BigEndian.Uint32(a.Value)
					}
				}
			}
			if owner == table.Name {
				out[name] = key
			}
			return err
		})
		return out, err
	})
}

// retryDumpMap is retryDump for a dump read into a map.
func retryDumpMap[K comparable, V any](dump func() (map[K]V, error)) (map[K]V, error) {
	var out map[K]V
	_, err := retryDump(func() ([]struct{}, error) {
		var err error
		out, err = dump()
		return nil, err
	})
	return out, err
}
