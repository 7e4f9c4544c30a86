package kernel

// Link shaping through netlink qdiscs (never the tc binary): a tbf for rate:,
// netem for delay:, loss:... (under the tbf when both), with netlab's handles
// (reconcile.QdiscHandle); link state (state: down); and the check, before any
// change, that the kernel has the qdisc kinds a lab's shaping needs.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

var (
	rootHandle  = netlink.MakeHandle(reconcile.QdiscHandle, 0)
	childHandle = netlink.MakeHandle(reconcile.QdiscChildHandle, 0)
	childParent = netlink.MakeHandle(reconcile.QdiscHandle, 1)
)

// defaultQdiscs are the root qdiscs an interface has when nobody set one: a
// namespace where every lab interface has one of these has nothing of
// netlab's to read.
func defaultQdisc(kind string) bool {
	switch kind {
	case "", "noqueue", "noop", "pfifo_fast", "mq", "fq_codel", "pfifo", "bfifo", "fq":
		return true
	}
	return false
}

// observeQdiscs reads netlab's qdiscs on the lab's interfaces of a namespace
// into part. It dumps the namespace's qdiscs only when an interface of the
// lab has a root qdisc that is not a default (the link dump says which), or
// the lab wants shaping there: a lab without shaping pays nothing.
//
// Equivalent to: tc -n NS qdisc show
func (d *Driver) observeQdiscs(part *nsPart, ns string, links []ifaceRow, want map[reconcile.InterfaceKey]*reconcile.Qdisc) error {
	// The lab's interfaces, read from these links: by the index they carry.
	byIndex := make(map[int]*reconcile.Interface, len(part.interfaces))
	for _, l := range part.interfaces {
		byIndex[l.Index] = l
	}
	need := false
	for _, l := range links {
		if byIndex[l.index] != nil {
			need = need || !defaultQdisc(l.qdisc)
		}
	}
	for _, l := range part.interfaces {
		// Looked up per interface, not by walking want: want holds the whole
		// lab's shaping, and this runs for every namespace.
		need = need || want[reconcile.InterfaceKey{NS: ns, Name: l.Name}] != nil
	}
	if !need || len(byIndex) == 0 {
		return nil
	}
	h, done, err := d.lib(ns)
	if err != nil {
		return err
	}
	defer done()
	qdiscs, err := retryDump(func() ([]netlink.Qdisc, error) { return h.QdiscList(nil) })
	if err != nil {
		return fmt.Errorf("netns %s: list qdiscs: %w", ns, err)
	}
	roots := map[int]netlink.Qdisc{}
	children := map[int]netlink.Qdisc{}
	for _, q := range qdiscs {
		a := q.Attrs()
		switch {
		case a.Parent == netlink.HANDLE_ROOT && a.Handle == rootHandle:
			roots[a.LinkIndex] = q
		case a.Parent == childParent && a.Handle == childHandle:
			children[a.LinkIndex] = q
		}
	}
	for index, root := range roots {
		l := byIndex[index]
		if l == nil {
			continue
		}
		q := &reconcile.Qdisc{InterfaceKey: l.InterfaceKey}
		switch root := root.(type) {
		case *netlink.Tbf:
			readTbf(q, root)
			if child, ok := children[index].(*netlink.Netem); ok {
				readNetem(q, child)
			}
		case *netlink.Netem:
			readNetem(q, root)
		default:
			q = nil // a qdisc of netlab's handle but no kind of its own: someone's
		}
		if q == nil {
			continue
		}
		if w := want[l.InterfaceKey]; w != nil && sameEncoding(w, q) {
			c := *w
			c.NetemKeys = nil
			q = &c
		}
		part.qdiscs = append(part.qdiscs, q)
	}
	return nil
}

// readTbf and readNetem decode the kernel's values into the file's units.
func readTbf(q *reconcile.Qdisc, t *netlink.Tbf) {
	q.Rate = t.Rate * 8
	q.TbfLimit = uint64(t.Limit)
	// The burst is kept as the time it takes at the rate, in ticks: read back, it
	// is a few bytes off what was written. A whole number of kb or of 1000
	// bytes within that is what was written.
	burst := float64(t.Buffer) / netlink.TickInUsec() * float64(t.Rate) / 1e6
	q.Burst = uint64(math.Round(burst))
	slack := float64(burstSlack(q.Rate))
	for _, unit := range []float64{1024, 1000} {
		if n := math.Round(burst/unit) * unit; n > 0 && math.Abs(burst-n) <= slack {
			q.Burst = uint64(n)
			break
		}
	}
}

// burstSlack is how far a burst read back may be from the one written: what
// 4 microseconds carry at the rate, and 2 bytes.
func burstSlack(rate uint64) uint64 { return rate/8*4/1_000_000 + 2 }

func readNetem(q *reconcile.Qdisc, n *netlink.Netem) {
	q.Netem = true
	q.Delay = ticks(n.Latency)
	q.Jitter = ticks(n.Jitter)
	q.Loss = percent(n.Loss)
	q.Duplicate = percent(n.Duplicate)
	q.Corrupt = percent(n.CorruptProb)
	q.Limit = int(n.Limit)
}

// ticks converts the kernel's scheduler ticks to a duration.
func ticks(t uint32) time.Duration {
	usec := float64(t) / netlink.TickInUsec()
	return time.Duration(math.Round(usec)) * time.Microsecond
}

func percent(p uint32) float64 { return float64(p) / math.MaxUint32 * 100 }

// sameEncoding reports whether what the kernel holds is the desired shaping as
// netlab (or tc, from the plan's script) wrote it: the kernel keeps a burst as
// the time it takes at the rate, in ticks, and probabilities as fractions of
// 2^32, so a value read back may be off by the rounding.
func sameEncoding(want, have *reconcile.Qdisc) bool {
	if want.Rate != have.Rate || want.TbfLimit != have.TbfLimit || want.Netem != have.Netem || want.Limit != have.Limit {
		return false
	}
	if want.Rate > 0 {
		slack := burstSlack(want.Rate)
		if diff := int64(want.Burst) - int64(have.Burst); diff > int64(slack) || -diff > int64(slack) {
			return false
		}
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-4 }
	nearTime := func(a, b time.Duration) bool { return (a - b).Abs() <= 2*time.Microsecond }
	return nearTime(want.Delay, have.Delay) && nearTime(want.Jitter, have.Jitter) &&
		near(want.Loss, have.Loss) && near(want.Duplicate, have.Duplicate) && near(want.Corrupt, have.Corrupt)
}

// tbf and netem are the qdiscs of a shaping on the interface index.
func tbf(q reconcile.Qdisc, index int) *netlink.Tbf {
	rate := q.Rate / 8
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Limit:      uint32(q.TbfLimit),
		Buffer:     netlink.Xmittime(rate, uint32(q.Burst)),
	}
}

func netem(q reconcile.Qdisc, index int, child bool) *netlink.Netem {
	attrs := netlink.QdiscAttrs{LinkIndex: index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT}
	if child {
		attrs.Handle, attrs.Parent = childHandle, childParent
	}
	return netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{
		Latency:     uint32(q.Delay / time.Microsecond),
		Jitter:      uint32(q.Jitter / time.Microsecond),
		Loss:        float32(q.Loss),
		Duplicate:   float32(q.Duplicate),
		CorruptProb: float32(q.Corrupt),
		Limit:       uint32(q.Limit),
	})
}

// replaceQdisc puts a shaping in place. Parameters of the same kinds change
// in place; other kinds replace netlab's qdiscs (a tbf's child cannot simply
// be removed: the tbf would then drop everything).
//
// Equivalent to: the tc commands of reconcile.ReplaceQdisc
func (d *Driver) replaceQdisc(a reconcile.ReplaceQdisc) error {
	for _, k := range a.Ends() {
		q, _ := a.On(k)
		if err := d.shape(q, a.InPlace()); err != nil {
			return err
		}
	}
	return nil
}

// shape puts one interface's shaping in place (see replaceQdisc).
func (d *Driver) shape(q reconcile.Qdisc, inPlace bool) error {
	return d.withInterface(q.InterfaceKey, func(h *netlink.Handle, l netlink.Link) error {
		index := l.Attrs().Index
		if inPlace {
			if q.Rate > 0 {
				if err := h.QdiscChange(tbf(q, index)); err != nil {
					return qdiscError("tbf", err)
				}
			}
			if q.Netem {
				if err := h.QdiscChange(netem(q, index, q.Rate > 0)); err != nil {
					return qdiscError("netem", err)
				}
			}
			return nil
		}
		if err := deleteOwnRoot(h, index); err != nil {
			return err
		}
		if q.Rate == 0 {
			return qdiscError("netem", h.QdiscReplace(netem(q, index, false)))
		}
		if err := h.QdiscReplace(tbf(q, index)); err != nil {
			return qdiscError("tbf", err)
		}
		if q.Netem {
			return qdiscError("netem", h.QdiscReplace(netem(q, index, true)))
		}
		return nil
	})
}

// deleteOwnRoot deletes netlab's root qdisc of an interface, if it has one; a
// root qdisc of another handle is left alone (the kernel refuses to delete a
// root by the wrong handle).
//
// Equivalent to: tc qdisc del dev IF root handle 4e4c:
func deleteOwnRoot(h *netlink.Handle, index int) error {
	err := h.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT}})
	if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	return fmt.Errorf("delete qdisc: %w", err)
}

func qdiscError(kind string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("qdisc %s: this kernel has no %s module: %w", kind, reconcile.ModuleOf(kind), err)
	}
	return fmt.Errorf("qdisc %s: %w", kind, err)
}

// deleteQdisc removes netlab's shaping of an interface; an interface that is
// gone has none.
func (d *Driver) deleteQdisc(k reconcile.InterfaceKey) error {
	err := d.withInterface(k, func(h *netlink.Handle, l netlink.Link) error { return deleteOwnRoot(h, l.Attrs().Index) })
	if isNotFound(err) {
		return nil
	}
	return err
}

// missingQdiscs finds the qdisc kinds the lab's shaping needs that the kernel
// does not have, by adding one to lo of a throwaway namespace (the kernel loads
// the module if it can, as it would for the lab). What a kernel has is asked
// once per driver.
func (d *Driver) missingQdiscs(q reconcile.Query, s *reconcile.State) error {
	for _, want := range q.Qdiscs {
		for _, kind := range want.Kinds() {
			have, err := d.hasQdisc(kind)
			if err != nil {
				return err
			}
			if !have {
				if s.MissingQdiscs == nil {
					s.MissingQdiscs = map[string]string{}
				}
				s.MissingQdiscs[kind] = reconcile.ModuleOf(kind)
			}
		}
	}
	return nil
}

func (d *Driver) hasQdisc(kind string) (bool, error) {
	d.mu.Lock()
	have, known := d.qdiscKinds[kind]
	d.mu.Unlock()
	if known {
		return have, nil
	}
	err := inThrowawayNetns(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		probe := reconcile.Qdisc{Rate: 8_000_000, Burst: 32 << 10, TbfLimit: 64 << 10, Netem: true, Delay: time.Millisecond, Limit: reconcile.DefaultNetemLimit}
		var qd netlink.Qdisc = tbf(probe, lo.Attrs().Index)
		if kind == "netem" {
			qd = netem(probe, lo.Attrs().Index, false)
		}
		switch err := h.QdiscAdd(qd); {
		case err == nil:
			have = true
		case errors.Is(err, unix.ENOENT):
			have = false
		default:
			return err
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("find whether the kernel has qdisc %s: %w", kind, err)
	}
	d.mu.Lock()
	if d.qdiscKinds == nil {
		d.qdiscKinds = map[string]bool{}
	}
	d.qdiscKinds[kind] = have
	d.mu.Unlock()
	return have, nil
}

// setDown sets an interface administratively down.
//
// Equivalent to: ip -n NS link set NAME down
func (d *Driver) setDown(k reconcile.InterfaceKey) error {
	return d.withInterface(k, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetDown(l) })
}

func (d applier) ApplyReplaceQdisc(_ context.Context, a reconcile.ReplaceQdisc) error {
	return d.replaceQdisc(a)
}

func (d applier) ApplyDeleteQdisc(_ context.Context, a reconcile.DeleteQdisc) error {
	for _, k := range a.Ends() {
		if err := d.deleteQdisc(k); err != nil {
			return err
		}
	}
	return nil
}

func (d applier) ApplySetDown(_ context.Context, a reconcile.SetDown) error {
	return d.setDown(a.InterfaceKey)
}
