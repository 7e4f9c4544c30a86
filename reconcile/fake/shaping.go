package fake

// Link shaping, link state and addresses on lo, as the kernel does them: a
// qdisc lives on its interface and goes with it; an interface set down loses
// its IPv4 routes and IPv6 addresses, and takes no route; a namespace's lo
// exists as long as the namespace, and its addresses go with it.

import (
	"context"
	"fmt"

	r "netlab/reconcile"
)

// observeShaping adds the lab's qdiscs, the qdisc kinds the lab wants that the
// fake kernel lacks, and the addresses and routes on the lo of the lab's
// namespaces (Observe first counts them as foreign: lo is no link of the lab's).
func (d *Driver) observeShaping(s *r.State, q r.Query) {
	for k, qd := range d.qdiscs {
		if _, ok := s.Interfaces[k]; ok {
			c := *qd
			s.Qdiscs[k] = &c
		}
	}
	for _, want := range q.Qdiscs {
		for _, kind := range want.Kinds() {
			if d.NoQdisc[kind] {
				if s.MissingQdiscs == nil {
					s.MissingQdiscs = map[string]string{}
				}
				s.MissingQdiscs[kind] = r.ModuleOf(kind)
			}
		}
	}
	for a := range s.ForeignAddrs {
		if a.Name == "lo" && s.Namespaces[a.NS] != nil {
			delete(s.ForeignAddrs, a)
			s.Addrs[a] = true
		}
	}
	for k, rt := range s.ForeignRoutes {
		if rt.Dev == "lo" && s.Namespaces[k.NS] != nil {
			delete(s.ForeignRoutes, k)
			s.Routes[k] = rt
		}
	}
}

func (d model) ApplyReplaceQdisc(_ context.Context, a r.ReplaceQdisc) error {
	for _, k := range a.Ends() {
		if _, err := d.iface(k); err != nil {
			return err
		}
		for _, kind := range a.Qdisc.Kinds() {
			if d.NoQdisc[kind] {
				return fmt.Errorf("%s: qdisc %s: %w", k, kind, ErrNotFound)
			}
		}
		q, _ := a.On(k)
		q.NetemKeys = nil // desired only
		d.qdiscs[k] = &q
	}
	return nil
}

func (d model) ApplyDeleteQdisc(_ context.Context, a r.DeleteQdisc) error {
	for _, k := range a.Ends() {
		delete(d.qdiscs, k)
	}
	return nil
}

// ApplySetDown sets an interface down with what the kernel takes along: its
// IPv4 routes and its IPv6 addresses.
func (d model) ApplySetDown(_ context.Context, a r.SetDown) error {
	l, err := d.iface(a.InterfaceKey)
	if err != nil {
		return err
	}
	l.Up = false
	for rk, rt := range d.routes {
		if rk.NS == a.NS && rt.Dev == a.Name && rk.To.Addr().Is4() {
			delete(d.routes, rk)
		}
	}
	for ak := range d.addrs {
		if ak.InterfaceKey == a.InterfaceKey && ak.Prefix.Addr().Is6() {
			delete(d.addrs, ak)
		}
	}
	return nil
}

// ifaceOrLoopback is d.link for an address's interface, lo of a namespace included.
func (d *Driver) ifaceOrLoopback(k r.InterfaceKey) error {
	if k.Name == "lo" && k.NS != r.Host && d.nsExists(k.NS) {
		return nil
	}
	_, err := d.iface(k)
	return err
}

// routeDevice checks that a route's device can take it: it exists and is up.
func (d *Driver) routeDevice(k r.InterfaceKey) error {
	if err := d.ifaceOrLoopback(k); err != nil {
		return err
	}
	if l := d.ifaces[k]; l != nil && !l.Up {
		return fmt.Errorf("%s: nexthop device is not up", k) // as the kernel says (ENETDOWN)
	}
	return nil
}

// dropLoopback removes what lo of a deleted namespace held.
func (d *Driver) dropLoopback(ns string) {
	for a := range d.addrs {
		if a.NS == ns && a.Name == "lo" {
			delete(d.addrs, a)
		}
	}
	for k, rt := range d.routes {
		if k.NS == ns && rt.Dev == "lo" {
			delete(d.routes, k)
		}
	}
}

// DeleteQdisc removes the shaping of an interface, as `tc qdisc del dev IF root` would.
func (k *Kernel) DeleteQdisc(key r.InterfaceKey) { delete(k.d.qdiscs, key) }
