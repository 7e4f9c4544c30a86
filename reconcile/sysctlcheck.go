package reconcile

import (
	"fmt"
	"strings"
)

// A sysctl the kernel does not have (a misspelt key, a module not loaded) used
// to fail when its step came, after the namespaces, links and addresses before
// it were made: the lab half built. The driver checks every wanted sysctl while
// observing (State.MissingSysctls: in the namespace it will be written in; for
// a namespace or an interface the plan creates, where the kernel has the same
// sysctl: a fresh namespace, conf/default), and the plan is refused before the
// first change.

// MissingSysctlError says that sysctls the lab sets do not exist. It is returned
// before any change is made.
type MissingSysctlError struct {
	Lab     string
	Missing []string
}

func (e *MissingSysctlError) Error() string {
	return fmt.Sprintf("lab %s sets sysctls the kernel does not have (nothing was changed):\n  %s",
		e.Lab, strings.Join(e.Missing, "\n  "))
}

// missingSysctls refuses a plan that would write a sysctl the kernel does not have.
func missingSysctls(desired, observed *State) error {
	var out []string
	for _, k := range SortedSysctlKeys(observed.MissingSysctls) {
		if _, ok := desired.Sysctls[k]; !ok {
			continue // a saved value of a sysctl gone with its interface: nothing to write
		}
		where := "namespace " + k.NS
		if k.NS == Host {
			where = "the host namespace"
		}
		msg := fmt.Sprintf("sysctl %s does not exist in %s", k.Name(), where)
		switch hint := observed.MissingSysctls[k]; {
		case strings.HasPrefix(k.Path, "net/bridge/"):
			msg += " (the br_netfilter module is not loaded: modprobe br_netfilter)"
		case hint != "":
			msg += " (did you mean " + SysctlKey{Path: hint}.Name() + "?)"
		}
		out = append(out, msg)
	}
	if len(out) == 0 {
		return nil
	}
	return &MissingSysctlError{Lab: desired.Lab, Missing: out}
}
