package reconcile

// Link shaping and state: the queue discipline netlab puts on each end of a
// link written in map form (a tbf for rate:, netem for delay:, loss:...), and
// links that are down (state: down).
//
// netlab's qdiscs are known by their handles: the root is QdiscHandle (4e4c:,
// "NL"), netem under a tbf is QdiscChildHandle (4e4d:) in class 4e4c:1. A
// qdisc with another handle is someone else's: netlab reads only its own, and
// leaves the queues of links without shaping alone (a lab may still shape a
// link by hand, or with tc in a run: command, as before).

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"netlab/topology"
)

// The handles of netlab's qdiscs (major numbers; minor 0).
const (
	QdiscHandle      = 0x4e4c // the root: tbf, or netem alone
	QdiscChildHandle = 0x4e4d // netem under a tbf, in class 4e4c:1
)

// Qdisc is the shaping of one interface's egress.
type Qdisc struct {
	InterfaceKey
	// tbf, when Rate is not 0.
	Rate     uint64 // bits per second, a whole number of bytes
	Burst    uint64 // bytes
	TbfLimit uint64 // bytes queued before tbf drops
	// netem, when Netem.
	Netem     bool
	Delay     time.Duration
	Jitter    time.Duration
	Loss      float64 // percent
	Duplicate float64 // percent
	Corrupt   float64 // percent
	Limit     int     // netem's queue in packets

	// Desired only: the keys of the file that need netem (for a refusal's message).
	NetemKeys []string
}

// DefaultNetemLimit is netem's queue when the file gives no limit (as tc's).
const DefaultNetemLimit = 1000

// Kinds are the qdisc kinds the shaping needs: tbf, netem or both.
func (q *Qdisc) Kinds() []string {
	var out []string
	if q.Rate > 0 {
		out = append(out, "tbf")
	}
	if q.Netem {
		out = append(out, "netem")
	}
	return out
}

// Equal reports whether two shapings are the same (NetemKeys aside).
func (q *Qdisc) Equal(o *Qdisc) bool {
	a, b := *q, *o
	a.NetemKeys, b.NetemKeys = nil, nil
	return a.InterfaceKey == b.InterfaceKey && a.Rate == b.Rate && a.Burst == b.Burst && a.TbfLimit == b.TbfLimit &&
		a.Netem == b.Netem && a.Delay == b.Delay && a.Jitter == b.Jitter && a.Loss == b.Loss &&
		a.Duplicate == b.Duplicate && a.Corrupt == b.Corrupt && a.Limit == b.Limit
}

// tbfText and netemText are the parameters as tc writes them.
func (q *Qdisc) tbfText() string {
	return "rate " + topology.FormatRate(q.Rate) + " burst " + topology.FormatSize(q.Burst)
}

func (q *Qdisc) netemText() string {
	var parts []string
	if q.Delay > 0 {
		parts = append(parts, "delay "+tcTime(q.Delay))
		if q.Jitter > 0 {
			parts[len(parts)-1] += " " + tcTime(q.Jitter)
		}
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"loss", q.Loss}, {"duplicate", q.Duplicate}, {"corrupt", q.Corrupt}} {
		if p.v > 0 {
			parts = append(parts, p.name+" "+topology.FormatPercent(p.v))
		}
	}
	if q.Limit != DefaultNetemLimit {
		parts = append(parts, "limit "+strconv.Itoa(q.Limit))
	}
	return strings.Join(parts, " ")
}

// String is the shaping as the plan shows it: "tbf rate 10mbit burst 32kb, netem delay 20ms".
func (q *Qdisc) String() string {
	var parts []string
	if q.Rate > 0 {
		parts = append(parts, "tbf "+q.tbfText())
	}
	if q.Netem {
		parts = append(parts, "netem "+q.netemText())
	}
	return strings.Join(parts, ", ")
}

// changes lists what differs from old, as "rate 10mbit -> 20mbit".
func (q *Qdisc) changes(old *Qdisc) string {
	if !slices.Equal(q.Kinds(), old.Kinds()) {
		return old.String() + " -> " + q.String()
	}
	var out []string
	diff := func(name, was, is string) {
		if was != is {
			out = append(out, name+" "+was+" -> "+is)
		}
	}
	if q.Rate > 0 {
		diff("rate", topology.FormatRate(old.Rate), topology.FormatRate(q.Rate))
		diff("burst", topology.FormatSize(old.Burst), topology.FormatSize(q.Burst))
		if q.Rate == old.Rate && q.Burst == old.Burst { // else it follows from them
			diff("limit", strconv.FormatUint(old.TbfLimit, 10)+"b", strconv.FormatUint(q.TbfLimit, 10)+"b")
		}
	}
	if q.Netem {
		diff("delay", tcTime(old.Delay), tcTime(q.Delay))
		diff("jitter", tcTime(old.Jitter), tcTime(q.Jitter))
		diff("loss", topology.FormatPercent(old.Loss), topology.FormatPercent(q.Loss))
		diff("duplicate", topology.FormatPercent(old.Duplicate), topology.FormatPercent(q.Duplicate))
		diff("corrupt", topology.FormatPercent(old.Corrupt), topology.FormatPercent(q.Corrupt))
		diff("limit", strconv.Itoa(old.Limit), strconv.Itoa(q.Limit))
	}
	return strings.Join(out, ", ")
}

// tcTime writes a duration as tc reads it: 20ms, 1500us, 2s.
func tcTime(d time.Duration) string {
	switch {
	case d == 0:
		return "0ms"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return strconv.FormatInt(int64(d/time.Microsecond), 10) + "us"
}

// tc is `tc` or `tc -n NS`.
func tc(ns string) string {
	if ns == Host {
		return "tc"
	}
	return "tc -n " + ns
}

// commands are the tc commands that put the shaping in place from nothing
// (or over someone else's root qdisc, which replace takes the place of).
func (q *Qdisc) commands() []string {
	root := fmt.Sprintf("%s qdisc replace dev %s root handle %x:", tc(q.NS), q.Name, QdiscHandle)
	if q.Rate == 0 {
		return []string{root + " netem " + q.netemText()}
	}
	cmds := []string{fmt.Sprintf("%s tbf %s limit %d", root, q.tbfText(), q.TbfLimit)}
	if q.Netem {
		cmds = append(cmds, fmt.Sprintf("%s qdisc replace dev %s parent %x:1 handle %x: netem %s", tc(q.NS), q.Name, QdiscHandle, QdiscChildHandle, q.netemText()))
	}
	return cmds
}

func (q *Qdisc) deleteCommand() string {
	return fmt.Sprintf("%s qdisc del dev %s root handle %x:", tc(q.NS), q.Name, QdiscHandle)
}

// ReplaceQdisc puts a link end's shaping in place, or changes it. A change of
// parameters is made in place (tc qdisc change); a change of kinds (rate
// added to a delay) replaces netlab's qdiscs on the interface. The interface
// itself is never touched: it keeps its index, addresses and routes.
type ReplaceQdisc struct {
	Qdisc Qdisc
	Old   *Qdisc // nil when the interface has none of netlab's
	// Also are the other end of the link, when it gets the same shaping from
	// the same state: one action (one plan line) per link.
	Also []InterfaceKey
}

// Ends are the interfaces the action shapes.
func (a ReplaceQdisc) Ends() []InterfaceKey {
	return append([]InterfaceKey{a.Qdisc.InterfaceKey}, a.Also...)
}

// On is the action's shaping for one of its ends.
func (a ReplaceQdisc) On(k InterfaceKey) (q Qdisc, old *Qdisc) {
	q = a.Qdisc
	q.InterfaceKey = k
	if a.Old != nil {
		o := *a.Old
		o.InterfaceKey = k
		old = &o
	}
	return q, old
}

func (a ReplaceQdisc) Op() Op {
	if a.Old == nil {
		return OpAdd
	}
	return OpChange
}
func (a ReplaceQdisc) Phase() Phase { return phaseQdisc }
func (a ReplaceQdisc) Kind() string { return "qdisc" }
func (a ReplaceQdisc) Object() string {
	if a.Old == nil {
		return endList(a.Ends()) + " " + a.Qdisc.String()
	}
	return endList(a.Ends()) + " " + a.Qdisc.changes(a.Old)
}

func endList(ends []InterfaceKey) string {
	s := make([]string, len(ends))
	for i, k := range ends {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

// InPlace reports whether the change keeps the qdiscs and changes their
// parameters (the same kinds).
func (a ReplaceQdisc) InPlace() bool {
	return a.Old != nil && slices.Equal(a.Old.Kinds(), a.Qdisc.Kinds())
}

func (a ReplaceQdisc) Commands() []string {
	var cmds []string
	for _, k := range a.Ends() {
		q, old := a.On(k)
		if old != nil && !a.InPlace() {
			cmds = append(cmds, old.deleteCommand())
		}
		cmds = append(cmds, q.commands()...)
	}
	return cmds
}

// DeleteQdisc removes netlab's shaping from an interface whose link no longer
// asks for it (and from the other end, Also); the interface gets its default
// queue back.
type DeleteQdisc struct {
	Old  Qdisc
	Also []InterfaceKey
}

// Ends are the interfaces the action unshapes.
func (a DeleteQdisc) Ends() []InterfaceKey {
	return append([]InterfaceKey{a.Old.InterfaceKey}, a.Also...)
}

func (a DeleteQdisc) Op() Op         { return OpDelete }
func (a DeleteQdisc) Phase() Phase   { return phaseDeleteQdisc }
func (a DeleteQdisc) Kind() string   { return "qdisc" }
func (a DeleteQdisc) Object() string { return endList(a.Ends()) + " " + a.Old.String() }
func (a DeleteQdisc) Commands() []string {
	var cmds []string
	for _, k := range a.Ends() {
		q := a.Old
		q.InterfaceKey = k
		cmds = append(cmds, q.deleteCommand())
	}
	return cmds
}

// SetDown sets an interface administratively down (state: down).
type SetDown struct{ InterfaceKey }

func (a SetDown) Op() Op         { return OpChange }
func (a SetDown) Phase() Phase   { return phaseLinkAttrs }
func (a SetDown) Kind() string   { return "link" }
func (a SetDown) Object() string { return a.InterfaceKey.String() + " up -> down" }
func (a SetDown) Commands() []string {
	return []string{fmt.Sprintf("%s link set %s down", ipn(a.NS), a.Name)}
}

// ModuleOf names the kernel module of a qdisc kind.
func ModuleOf(kind string) string { return "sch_" + kind }

// MissingModuleError says that the lab shapes links with a qdisc kind this
// kernel does not have. It is returned before any change is made.
type MissingModuleError struct {
	Lab     string
	Missing []string // one per module: "delay and loss need the sch_netem kernel module, which this kernel lacks (on r:a, far:b)"
}

func (e *MissingModuleError) Error() string {
	return strings.Join(e.Missing, "; ") + "; nothing was changed"
}

// missingModules refuses a plan whose shaping needs a qdisc kind the kernel
// lacks (observed.MissingQdiscs).
func missingModules(desired, observed *State) error {
	var out []string
	for _, kind := range []string{"tbf", "netem"} {
		if _, ok := observed.MissingQdiscs[kind]; !ok {
			continue
		}
		var keys []string
		var where []string
		for _, k := range sortedKeys(desired.Qdiscs, InterfaceKey.compare) {
			q := desired.Qdiscs[k]
			if !slices.Contains(q.Kinds(), kind) {
				continue
			}
			used := []string{"rate"}
			if kind == "netem" {
				used = q.NetemKeys
			}
			for _, key := range used {
				if !slices.Contains(keys, key) {
					keys = append(keys, key)
				}
			}
			where = append(where, k.String())
		}
		if len(where) == 0 {
			continue
		}
		slices.SortFunc(keys, func(a, b string) int { return keyOrder(a) - keyOrder(b) })
		verb := "needs"
		if len(keys) > 1 {
			verb = "need"
		}
		subject := strings.Join(keys, ", ")
		if i := strings.LastIndex(subject, ", "); i >= 0 {
			subject = subject[:i] + " and " + subject[i+2:]
		}
		if subject == "" {
			subject = kind
		}
		out = append(out, fmt.Sprintf("%s %s the %s kernel module, which this kernel lacks (on %s)", subject, verb, ModuleOf(kind), strings.Join(where, ", ")))
	}
	if len(out) == 0 {
		return nil
	}
	return &MissingModuleError{Lab: desired.Lab, Missing: out}
}

func keyOrder(k string) int {
	return slices.Index([]string{"rate", "delay", "jitter", "loss", "duplicate", "corrupt"}, k)
}

// qdiscs plans the shaping of the lab's interfaces: netlab's qdiscs where the
// file asks for them, none of netlab's where it does not. The two ends of a
// link that change alike are one action: a rate edit is one line.
func (d *differ) qdiscs() {
	var replaces []ReplaceQdisc
	for _, k := range sortedKeys(d.desired.Qdiscs, InterfaceKey.compare) {
		want := d.desired.Qdiscs[k]
		have := d.observed.Qdiscs[k]
		var a ReplaceQdisc
		switch {
		case have == nil || !d.exists(k):
			a = ReplaceQdisc{Qdisc: *want}
		case !want.Equal(have):
			old := *have
			a = ReplaceQdisc{Qdisc: *want, Old: &old}
		default:
			continue
		}
		if i := slices.IndexFunc(replaces, func(b ReplaceQdisc) bool { return d.peers(b.Qdisc.InterfaceKey, k) && sameChange(b, a) }); i >= 0 {
			replaces[i].Also = append(replaces[i].Also, k)
			continue
		}
		replaces = append(replaces, a)
	}
	for _, a := range replaces {
		d.add(a)
	}
	var deletes []DeleteQdisc
	for _, k := range sortedKeys(d.observed.Qdiscs, InterfaceKey.compare) {
		if _, ok := d.desired.Qdiscs[k]; ok || !d.exists(k) {
			continue
		}
		old := *d.observed.Qdiscs[k]
		if i := slices.IndexFunc(deletes, func(b DeleteQdisc) bool { return d.peers(b.Old.InterfaceKey, k) && sameShaping(&b.Old, &old) }); i >= 0 {
			deletes[i].Also = append(deletes[i].Also, k)
			continue
		}
		deletes = append(deletes, DeleteQdisc{Old: old})
	}
	for _, a := range deletes {
		d.add(a)
	}
}

// peers reports whether two interfaces are the ends of one veth pair.
func (d *differ) peers(a, b InterfaceKey) bool {
	for _, s := range []*State{d.desired, d.observed} {
		if l := s.Interfaces[a]; l != nil && l.Kind == KindVeth && l.Peer == b {
			return true
		}
	}
	return false
}

// sameShaping compares two shapings whatever interface they are on.
func sameShaping(a, b *Qdisc) bool {
	x, y := *a, *b
	x.InterfaceKey, y.InterfaceKey = InterfaceKey{}, InterfaceKey{}
	return x.Equal(&y)
}

// sameChange reports whether two actions make the same change on their ends.
func sameChange(a, b ReplaceQdisc) bool {
	if !sameShaping(&a.Qdisc, &b.Qdisc) || (a.Old == nil) != (b.Old == nil) {
		return false
	}
	return a.Old == nil || sameShaping(a.Old, b.Old)
}

// linkStates plans SetDown for the lab's interfaces that are up and should be
// down. The kernel drops the IPv6 addresses of an interface it sets down
// (unless keep_addr_on_down), so those are added again after it.
func (d *differ) linkStates() {
	for _, k := range sortedKeys(d.desired.Interfaces, InterfaceKey.compare) {
		want, have := d.desired.Interfaces[k], d.observed.Interfaces[k]
		if want.Up || have == nil || !have.Up || !d.exists(k) {
			continue
		}
		d.add(SetDown{InterfaceKey: k})
		for _, a := range sortedKeys(d.desired.Addrs, AddrKey.compare) {
			if a.InterfaceKey == k && a.Prefix.Addr().Is6() && d.observed.Addrs[a] {
				d.add(AddAddr{a})
			}
		}
	}
}

// compileShaping adds to a desired state what the map form of the lab's
// links asks for: both ends' state and MTU (validated against their own and
// their bridge's), and a Qdisc on each end of a shaped link. It also leaves
// out the routes through interfaces that are down: the kernel refuses a route
// through a device that is down, and deletes those it had when the device
// goes down.
func compileShaping(lab *topology.Lab, s *State, kname func(string) string) {
	for _, l := range lab.Links {
		for _, e := range l.Ends {
			if ifc := s.Interfaces[InterfaceKey{kname(e.Namespace), e.Interface}]; ifc != nil {
				ifc.Up = !l.Down
				if l.MTU != 0 {
					ifc.MTU = l.MTU
				}
			}
		}
		sh := l.Shaping
		if sh.Empty() {
			continue
		}
		for _, e := range l.Ends {
			k := InterfaceKey{kname(e.Namespace), e.Interface}
			mtu := l.MTU
			if link := s.Interfaces[k]; link != nil && link.MTU != 0 {
				mtu = link.MTU
			}
			q := &Qdisc{InterfaceKey: k}
			if sh.Rate > 0 {
				q.Rate = sh.Rate
				q.Burst = sh.Burst
				if q.Burst == 0 {
					q.Burst = topology.DefaultBurst(sh.Rate, mtu)
				}
				q.TbfLimit = TbfLimit(sh, q.Burst, mtu)
			}
			if sh.Netem() {
				q.Netem = true
				q.Delay, q.Jitter = sh.Delay, sh.Jitter
				q.Loss, q.Duplicate, q.Corrupt = sh.Loss, sh.Duplicate, sh.Corrupt
				q.Limit = sh.Limit
				if q.Limit == 0 {
					q.Limit = DefaultNetemLimit
				}
				q.NetemKeys = sh.NetemKeys()
			}
			s.Qdiscs[k] = q
		}
	}
	for k, r := range s.Routes {
		if l := s.Interfaces[InterfaceKey{k.NS, r.Dev}]; l != nil && !l.Up {
			delete(s.Routes, k)
		}
	}
}

// TbfLimit is the bytes tbf queues before it drops: limit: packets of the
// link's MTU when netem does not queue them itself, else 50 ms of traffic at
// the rate on top of the burst (as tc's latency 50ms).
func TbfLimit(sh topology.Shaping, burst uint64, mtu int) uint64 {
	if mtu == 0 {
		mtu = 1500
	}
	if sh.Limit > 0 && !sh.Netem() {
		return uint64(sh.Limit) * uint64(mtu+14)
	}
	return sh.Rate/8/20 + burst
}

func (a ReplaceQdisc) Namespaces() []string { return endNamespaces(a.Ends()) }
func (a ReplaceQdisc) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyReplaceQdisc(ctx, a)
}

func (a DeleteQdisc) Namespaces() []string { return endNamespaces(a.Ends()) }
func (a DeleteQdisc) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyDeleteQdisc(ctx, a)
}

func (a SetDown) Namespaces() []string { return []string{a.NS} }
func (a SetDown) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplySetDown(ctx, a)
}

// endNamespaces are the namespaces of a link's ends.
func endNamespaces(ends []InterfaceKey) []string {
	out := make([]string, len(ends))
	for i, k := range ends {
		out[i] = k.NS
	}
	return out
}
