package fake

import (
	"context"

	r "netlab/reconcile"
)

// utsNS is a UTS namespace the fake kernel keeps for a lab's namespace.
type utsNS struct{ lab, hostname string }

func (d *Driver) observeUTS(lab string, s *r.State) {
	for ns, u := range d.uts {
		if u.lab == lab {
			s.UTS[ns] = u.hostname
		}
	}
}

func (d model) ApplyCreateUTS(_ context.Context, a r.CreateUTS) error {
	d.uts[a.NS] = utsNS{a.Lab, a.Hostname}
	return nil
}

func (d model) ApplySetHostname(_ context.Context, a r.SetHostname) error {
	d.uts[a.NS] = utsNS{a.Lab, a.Hostname}
	return nil
}

func (d model) ApplyDeleteUTS(_ context.Context, a r.DeleteUTS) error {
	delete(d.uts, a.NS)
	return nil
}

// SetHostname changes a namespace's hostname by hand (drift).
func (k *Kernel) SetHostname(ns, hostname string) {
	if u, ok := k.d.uts[ns]; ok {
		k.d.uts[ns] = utsNS{u.lab, hostname}
	}
}
