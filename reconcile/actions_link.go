package reconcile

// The actions that change an existing interface's attributes: its marker, its
// bridge, MTU, MAC address, up state and a bridge's multicast snooping.

import (
	"context"
	"fmt"
)

// MarkInterface writes the ownership marker on an interface this lab created but could
// not mark because the run was interrupted.
type MarkInterface struct {
	Lab string
	InterfaceKey
}

func (a MarkInterface) Op() Op         { return OpChange }
func (a MarkInterface) Phase() Phase   { return phaseMark }
func (a MarkInterface) Kind() string   { return "link" }
func (a MarkInterface) Object() string { return a.InterfaceKey.String() + " mark " + Marker(a.Lab) }
func (a MarkInterface) Commands() []string {
	return []string{fmt.Sprintf("%s link set %s alias %s", ipn(a.NS), a.Name, Marker(a.Lab))}
}

func (a MarkInterface) Namespaces() []string { return []string{a.NS} }
func (a MarkInterface) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyMarkInterface(ctx, a)
}

// SetMaster makes an interface a port of a bridge (or of none).
type SetMaster struct {
	InterfaceKey
	Master, Old string
	New         bool // the interface is created by the same plan
}

func (a SetMaster) Op() Op {
	if a.New {
		return OpAdd
	}
	return OpChange
}
func (a SetMaster) Phase() Phase { return phaseMaster }
func (a SetMaster) Kind() string { return "port" }
func (a SetMaster) Object() string {
	if a.New {
		return a.InterfaceKey.String() + " master " + a.Master
	}
	return a.InterfaceKey.String() + " master " + orNone(a.Old) + " -> " + orNone(a.Master)
}
func (a SetMaster) Commands() []string {
	if a.Master == "" {
		return []string{fmt.Sprintf("%s link set %s nomaster", ipn(a.NS), a.Name)}
	}
	return []string{fmt.Sprintf("%s link set %s master %s", ipn(a.NS), a.Name, a.Master)}
}

func (a SetMaster) Namespaces() []string                         { return []string{a.NS} }
func (a SetMaster) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetMaster(ctx, a) }

// SetMTU changes the MTU of an existing interface.
type SetMTU struct {
	InterfaceKey
	MTU, Old int
}

func (a SetMTU) Op() Op       { return OpChange }
func (a SetMTU) Phase() Phase { return phaseLinkAttrs }
func (a SetMTU) Kind() string { return "link" }
func (a SetMTU) Object() string {
	return fmt.Sprintf("%s mtu %d -> %d", a.InterfaceKey, a.Old, a.MTU)
}
func (a SetMTU) Commands() []string {
	return []string{fmt.Sprintf("%s link set %s mtu %d", ipn(a.NS), a.Name, a.MTU)}
}

func (a SetMTU) Namespaces() []string                         { return []string{a.NS} }
func (a SetMTU) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetMTU(ctx, a) }

// SetMAC changes the MAC address of an existing interface.
type SetMAC struct {
	InterfaceKey
	MAC, Old string
}

func (a SetMAC) Op() Op       { return OpChange }
func (a SetMAC) Phase() Phase { return phaseLinkAttrs }
func (a SetMAC) Kind() string { return "link" }
func (a SetMAC) Object() string {
	return fmt.Sprintf("%s mac %s -> %s", a.InterfaceKey, a.Old, a.MAC)
}
func (a SetMAC) Commands() []string {
	return []string{fmt.Sprintf("%s link set %s address %s", ipn(a.NS), a.Name, a.MAC)}
}

func (a SetMAC) Namespaces() []string                         { return []string{a.NS} }
func (a SetMAC) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetMAC(ctx, a) }

// SetUp brings an interface up.
type SetUp struct {
	InterfaceKey
	New         bool // the interface is created by the same plan
	Bridge      bool // the interface is a bridge: see the kernel driver's bringBridgeUp
	SnoopingOff bool // a bridge that is to keep multicast snooping off
}

func (a SetUp) Op() Op {
	if a.New {
		return OpAdd
	}
	return OpChange
}
func (a SetUp) Phase() Phase { return phaseUp }
func (a SetUp) Kind() string { return "link" }
func (a SetUp) Object() string {
	if a.New {
		return a.InterfaceKey.String() + " up"
	}
	return a.InterfaceKey.String() + " down -> up"
}
func (a SetUp) Commands() []string {
	return []string{fmt.Sprintf("%s link set %s up", ipn(a.NS), a.Name)}
}

func (a SetUp) Namespaces() []string                         { return []string{a.NS} }
func (a SetUp) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetUp(ctx, a) }

// SetSnooping turns a lab bridge's multicast snooping on or off, as the file
// wants it (on unless `multicast-snooping: false`, as the kernel and Docker make
// bridges). netlab also turns it off for the moment it brings a bridge up (see
// the kernel driver's bringBridgeUp): a run stopped in that moment leaves it
// off, which the next plan puts right like a change by hand.
type SetSnooping struct {
	InterfaceKey
	On bool
}

func (a SetSnooping) Op() Op       { return OpChange }
func (a SetSnooping) Phase() Phase { return phaseLinkAttrs }
func (a SetSnooping) Kind() string { return "link" }
func (a SetSnooping) Object() string {
	if a.On {
		return a.InterfaceKey.String() + " multicast snooping off -> on"
	}
	return a.InterfaceKey.String() + " multicast snooping on -> off"
}
func (a SetSnooping) Commands() []string {
	v := 0
	if a.On {
		v = 1
	}
	return []string{fmt.Sprintf("%s link set %s type bridge mcast_snooping %d", ipn(a.NS), a.Name, v)}
}

func (a SetSnooping) Namespaces() []string                         { return []string{a.NS} }
func (a SetSnooping) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetSnooping(ctx, a) }
