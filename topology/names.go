package topology

import "fmt"

// CheckLabName returns an error unless name can be a lab's name: the rule of
// `name:` in a lab file. A lab's name becomes a directory and a lock file in
// netlab's state directory and the marker on everything the lab owns, so a name
// given on the command line (down --lab, status, inspect, exec --lab) must pass
// it before it is used for anything.
func CheckLabName(name string) error {
	if !labNameRE.MatchString(name) {
		return fmt.Errorf("invalid lab name %q: %s", name, labNameWant)
	}
	return nil
}
