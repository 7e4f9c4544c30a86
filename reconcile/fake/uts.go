package fake

import r "netlab/reconcile"

// utsNS is a UTS namespace the fake kernel keeps for a lab's namespace.
type utsNS struct{ lab, hostname string }

func (d *Driver) observeUTS(lab string, s *r.State) {
	for ns, u := range d.uts {
		if u.lab == lab {
			s.UTS[ns] = u.hostname
		}
	}
}

func (d *Driver) applyUTS(a r.Action) {
	switch a := a.(type) {
	case r.CreateUTS:
		d.uts[a.NS] = utsNS{a.Lab, a.Hostname}
	case r.SetHostname:
		d.uts[a.NS] = utsNS{a.Lab, a.Hostname}
	case r.DeleteUTS:
		delete(d.uts, a.NS)
	}
}

// SetHostname changes a namespace's hostname by hand (drift).
func (k *Kernel) SetHostname(ns, hostname string) {
	if u, ok := k.d.uts[ns]; ok {
		k.d.uts[ns] = utsNS{u.lab, hostname}
	}
}
