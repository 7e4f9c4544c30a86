package topology

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a lab file, positioned like a compiler's.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, escapeControl(e.Msg))
}

// escapeControl writes control characters of a message (a NUL or a newline in a
// name from a hostile file, an escape sequence, a bidi override) as Go escapes,
// so an error is always one line of text that a terminal shows as it is.
func escapeControl(s string) string { return Printable(s) }

// Errors is every problem found in a file, sorted by position. It is the error
// type Parse, Validate and Load return.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sorted returns the errors ordered by position then message, without duplicates,
// so that output is stable whatever order the checks ran in.
func (es Errors) sorted() Errors {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col), strings.Compare(a.Msg, b.Msg))
	})
	return slices.CompactFunc(out, func(a, b *Error) bool { return *a == *b })
}
