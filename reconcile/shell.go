package reconcile

// What the Commands of actions are written with: the equivalent iproute2 and
// shell commands of `netlab plan -o commands`.

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"netlab/topology"
)

// ipn is `ip` or `ip -n NS`, for commands run in a namespace.
func ipn(ns string) string {
	if ns == Host {
		return "ip"
	}
	return "ip -n " + ns
}

func nsExec(ns string) string {
	if ns == Host {
		return ""
	}
	return "ip netns exec " + ns + " "
}

// shellQuote quotes a value for a shell command line when it needs it.
//
// A `plan -o commands` script is read as well as run (cat, less, a review), so
// no character a terminal acts on may appear in it raw, not even inside single
// quotes. Each such character (an ESC, a carriage return, a bidi override; see
// topology.Unprintable) is written as "$(printf '\033')", the octal escapes of
// its bytes: POSIX sh and printf, so the script still runs under dash, and the
// value that reaches the kernel is the file's, byte for byte. Newlines and tabs
// stay inside the quotes: a terminal shows them as what they are.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:") == "" {
		return s
	}
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != '\n' && r != '\t' && topology.Unprintable(r) {
			if quoted {
				b.WriteByte('\'')
				quoted = false
			}
			b.WriteString(`"$(printf '`)
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(&b, `\%03o`, c)
			}
			b.WriteString(`')"`)
			i += size
			continue
		}
		if !quoted {
			b.WriteByte('\'')
			quoted = true
		}
		if r == '\'' {
			b.WriteString(`'\''`)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if quoted || b.Len() == 0 {
		b.WriteByte('\'')
	}
	if b.Len() == 1 {
		return "''"
	}
	return b.String()
}
