package fake

import (
	"context"
	"fmt"
	"strings"

	r "netlab/reconcile"
)

// Apply performs one action with the kernel's semantics, idempotently: the
// action calls model's method for its kind (see reconcile.Applier).
func (d *Driver) Apply(ctx context.Context, a r.Action) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Fail != nil {
		if err := d.Fail(a); err != nil {
			if a, ok := a.(r.RunExec); ok {
				d.recordExecs(a.Lab, a.NS, a.List[:a.Index]) // a failed command is not recorded
			}
			return err
		}
	}
	d.Writes++
	return a.ApplyTo(ctx, model{d})
}

// model applies each kind of action to the fake's objects, with Driver.mu held.
type model struct{ *Driver }

var _ r.Applier = model{}

func (d model) ApplyCreateNetns(_ context.Context, a r.CreateNetns) error {
	if owner, ok := d.netns[a.Name]; ok && owner != a.Lab {
		return fmt.Errorf("netns %s: %w", a.Name, ErrExists)
	}
	if _, ok := d.netns[a.Name]; !ok {
		d.ipv6[a.Name] = a.IPv6
	}
	d.netns[a.Name] = a.Lab
	return nil
}

func (d model) ApplySetIPv6(_ context.Context, a r.SetIPv6) error {
	if _, ok := d.netns[a.Name]; !ok {
		return fmt.Errorf("netns %s: %w", a.Name, ErrNotFound)
	}
	d.ipv6[a.Name] = a.On
	return nil
}

func (d model) ApplyDeleteNetns(_ context.Context, a r.DeleteNetns) error {
	for k := range d.ifaces {
		if k.NS == a.Name {
			d.deleteInterface(k)
		}
	}
	for k := range d.sysctls {
		if k.NS == a.Name {
			delete(d.sysctls, k)
		}
	}
	for _, saved := range d.saved {
		for k := range saved {
			if k.NS == a.Name {
				delete(saved, k)
			}
		}
	}
	d.dropLoopback(a.Name)
	delete(d.netns, a.Name)
	delete(d.ipv6, a.Name)
	delete(d.tables, a.Name)
	delete(d.ipt, a.Name)
	delete(d.execs[a.Lab], a.Name) // the record of what ran in it goes with it
	for k := range d.procs {
		if k.NS == a.Name {
			delete(d.procs, k)
		}
	}
	return nil
}

func (d model) ApplyCreateBridge(_ context.Context, a r.CreateBridge) error {
	return d.createInterface(a.Lab, r.Interface{InterfaceKey: a.InterfaceKey, Kind: r.KindBridge, MTU: orDefault(a.MTU), MAC: a.MAC, SnoopingOff: a.SnoopingOff})
}

func (d model) ApplyCreateVeth(_ context.Context, a r.CreateVeth) error {
	for _, e := range []r.VethEnd{a.Main, a.Peer} {
		if e.Master != "" {
			if _, err := d.iface(r.InterfaceKey{NS: e.NS, Name: e.Master}); err != nil {
				return err
			}
		}
	}
	peer := map[r.InterfaceKey]r.InterfaceKey{a.Main.InterfaceKey: a.Peer.InterfaceKey, a.Peer.InterfaceKey: a.Main.InterfaceKey}
	for _, e := range []r.VethEnd{a.Main, a.Peer} {
		l := r.Interface{InterfaceKey: e.InterfaceKey, Kind: r.KindVeth, Peer: peer[e.InterfaceKey], MTU: orDefault(e.MTU), MAC: e.MAC, Master: e.Master, Up: e.Up}
		if err := d.createInterface(a.Lab, l); err != nil {
			return err
		}
	}
	return nil
}

func (d model) ApplyDeleteInterface(_ context.Context, a r.DeleteInterface) error {
	d.deleteInterface(a.InterfaceKey)
	return nil
}

func (d model) ApplyMarkInterface(_ context.Context, a r.MarkInterface) error {
	return d.setLink(a.InterfaceKey, func(l *iface) { l.owner = a.Lab })
}

func (d model) ApplySetMaster(_ context.Context, a r.SetMaster) error {
	l, err := d.iface(a.InterfaceKey)
	if err != nil {
		return err
	}
	if a.Master != "" {
		if _, err := d.iface(r.InterfaceKey{NS: a.NS, Name: a.Master}); err != nil {
			return err
		}
	}
	l.Master = a.Master
	l.Hairpin = false // a port that joins a bridge starts with the bridge's defaults
	return nil
}

func (d model) ApplySetHairpin(_ context.Context, a r.SetHairpin) error {
	l, err := d.iface(a.InterfaceKey)
	if err != nil {
		return err
	}
	if l.Master == "" {
		return fmt.Errorf("%s: not a bridge port: %w", a.InterfaceKey, ErrNotFound)
	}
	l.Hairpin = a.On
	return nil
}

func (d model) ApplyReplaceTable(_ context.Context, a r.ReplaceTable) error {
	if !d.nsExists(a.Table.NS) {
		return fmt.Errorf("netns %s: %w", a.Table.NS, ErrNotFound)
	}
	if a.Table.Layout == r.LayoutNftables {
		k := a.Table.Key()
		if have, ok := d.docker[k]; ok && have.owner != a.Lab {
			return fmt.Errorf("%s: %w", k, ErrExists)
		}
		d.docker[k] = dockerTable{owner: a.Lab, table: a.Table}
		return nil
	}
	if a.Table.Layout == r.LayoutIptables {
		if d.ipt[a.Table.NS] == nil {
			d.ipt[a.Table.NS] = map[string]*r.Table{}
		}
		d.ipt[a.Table.NS][a.Lab] = a.Table
		return nil
	}
	if d.tables[a.Table.NS] == nil {
		d.tables[a.Table.NS] = map[string]*r.Table{}
	}
	d.tables[a.Table.NS][a.Table.Name] = a.Table
	return nil
}

func (d model) ApplyDeleteTable(_ context.Context, a r.DeleteTable) error {
	if a.Layout == r.LayoutNftables {
		k := r.TableKey{NS: a.NS, Family: a.Family}
		if d.docker[k].owner == a.Lab {
			delete(d.docker, k)
		}
		return nil
	}
	if a.Layout == r.LayoutIptables {
		delete(d.ipt[a.NS], strings.TrimPrefix(a.Name, "netlab-"))
		return nil
	}
	delete(d.tables[a.NS], a.Name)
	return nil
}

func (d model) ApplyStartProcess(_ context.Context, a r.StartProcess) error {
	if !d.nsExists(a.NS) {
		return fmt.Errorf("netns %s: %w", a.NS, ErrNotFound)
	}
	p := &proc{Process: a.Process, lab: a.Lab}
	p.Ready = nil // desired only
	p.PIDs = []int{d.nextPID}
	d.nextPID++
	d.procs[a.ProcKey] = p
	return nil
}

func (d model) ApplyStopProcess(_ context.Context, a r.StopProcess) error {
	delete(d.procs, a.ProcKey)
	return nil
}

func (d model) ApplyWriteFile(_ context.Context, a r.WriteFile) error {
	if f, ok := d.files[a.FileKey]; ok && f.lab == "" {
		return fmt.Errorf("%s: %w", a.Path(), ErrExists)
	}
	d.files[a.FileKey] = file{content: a.Content, lab: labOf(a.Content)}
	return nil
}

func (d model) ApplyDeleteFile(_ context.Context, a r.DeleteFile) error {
	delete(d.files, a.FileKey)
	return nil
}

func (d model) ApplyRunExec(_ context.Context, a r.RunExec) error {
	if !d.nsExists(a.NS) {
		return fmt.Errorf("netns %s: %w", a.NS, ErrNotFound)
	}
	d.Ran = append(d.Ran, a.NS+": "+a.Command())
	d.recordExecs(a.Lab, a.NS, a.List)
	return nil
}

func (d model) ApplyForgetExec(_ context.Context, a r.ForgetExec) error {
	d.recordExecs(a.Lab, a.NS, a.Keep)
	return nil
}

func (d model) ApplySetMTU(_ context.Context, a r.SetMTU) error {
	return d.setLink(a.InterfaceKey, func(l *iface) { l.MTU = a.MTU })
}

func (d model) ApplySetMAC(_ context.Context, a r.SetMAC) error {
	return d.setLink(a.InterfaceKey, func(l *iface) { l.MAC = a.MAC })
}

func (d model) ApplySetUp(_ context.Context, a r.SetUp) error {
	if a.Name == "lo" {
		return nil // every fake namespace's loopback is up
	}
	return d.setLink(a.InterfaceKey, func(l *iface) { l.Up = true })
}

func (d model) ApplySetSnooping(_ context.Context, a r.SetSnooping) error {
	return d.setLink(a.InterfaceKey, func(l *iface) { l.SnoopingOff = !a.On })
}

func (d model) ApplyAddAddr(_ context.Context, a r.AddAddr) error {
	if err := d.ifaceOrLoopback(a.InterfaceKey); err != nil {
		return err
	}
	if a.Prefix.Addr().Is6() && a.NS != r.Host && !d.ipv6[a.NS] {
		return fmt.Errorf("%s: IPv6 is off: permission denied", a.InterfaceKey) // as the kernel says
	}
	d.addrs[a.AddrKey] = true
	return nil
}

func (d model) ApplyDeleteAddr(_ context.Context, a r.DeleteAddr) error {
	if d.addrs[a.AddrKey] {
		delete(d.addrs, a.AddrKey)
		d.dropRoutesOf(a.AddrKey)
	}
	return nil
}

func (d model) ApplyReplaceRoute(_ context.Context, a r.ReplaceRoute) error {
	if err := d.routeDevice(r.InterfaceKey{NS: a.NS, Name: a.Dev}); err != nil {
		return err
	}
	rt := a.Route
	d.routes[a.RouteKey] = &rt
	return nil
}

func (d model) ApplyDeleteRoute(_ context.Context, a r.DeleteRoute) error {
	delete(d.routes, a.RouteKey)
	return nil
}

func (d model) ApplySetSysctl(_ context.Context, a r.SetSysctl) error {
	if _, ok := d.NoSysctl[a.Path]; ok {
		return fmt.Errorf("netns %s: write sysctl %s: %w", a.NS, a.Name(), ErrNotFound)
	}
	if a.NS == r.Host {
		return d.setHostSysctl(a)
	}
	if a.Restore {
		d.sysctls[a.SysctlKey] = a.Value
		delete(d.saved[a.Lab], a.SysctlKey)
		return nil
	}
	if d.saved[a.Lab] == nil {
		d.saved[a.Lab] = map[r.SysctlKey]string{}
	}
	if _, ok := d.saved[a.Lab][a.SysctlKey]; !ok {
		d.saved[a.Lab][a.SysctlKey] = d.sysctl(a.SysctlKey)
	}
	d.sysctls[a.SysctlKey] = a.Value
	return nil
}

// setLink changes an interface of the fake kernel, or fails as the kernel
// does when there is none of that name.
func (d model) setLink(k r.InterfaceKey, f func(*iface)) error {
	l, err := d.iface(k)
	if err != nil {
		return err
	}
	f(l)
	return nil
}
