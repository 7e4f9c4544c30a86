package kernel

import (
	"bytes"

	"github.com/google/nftables/userdata"
)

// userdataString is the value of the first attribute of type typ in the
// userdata of a rule or table, which is a list of type, length, value; the
// library's GetString, checked.
//
// netlab reads the userdata of every rule in the host's shared ip filter / ip nat
// and of any table named docker-bridges, and anyone can write anything there.
// The library's Get slices a value past the end of the data before it checks
// the length (v0.3.0), so a malformed list from another tool would panic
// netlab. This parser checks every length first and reports "none" for a list
// it cannot read.
func userdataString(ud []byte, typ userdata.Type) (string, bool) {
	for len(ud) >= 2 {
		t, n := userdata.Type(ud[0]), int(ud[1])
		if len(ud) < 2+n {
			return "", false
		}
		if t == typ {
			v, _ := bytes.CutSuffix(ud[2:2+n], []byte{0}) // a string's NUL, as the library's GetString
			return string(v), true
		}
		ud = ud[2+n:]
	}
	return "", false
}
