package probe

// The mesh check: every ordered pair of a list of namespaces pings, from the
// first of the pinging namespace's sockets to the first address of the other
// (Mininet's pingall), and the result is a matrix.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"netlab/reconcile"
)

// Member is one namespace of a mesh.
type Member struct {
	Name string // as the file names it
	NS   string // its kernel name
	Addr string // the address the others ping
}

// Matrix is a mesh's outcome: OK[i][j] says whether Names[i] reached Names[j]
// (as expected: blocked, for a mesh that expects fail).
type Matrix struct {
	Names []string
	OK    [][]bool
}

// Pairs counts the ordered pairs and those that passed.
func (m *Matrix) Pairs() (passed, total int) {
	for i := range m.OK {
		for j := range m.OK[i] {
			if i != j {
				total++
				if m.OK[i][j] {
					passed++
				}
			}
		}
	}
	return passed, total
}

// meshConcurrency bounds the pings of a mesh in flight at once.
const meshConcurrency = 32

func runMesh(ctx context.Context, c Check, enter Enter) Result {
	n := len(c.Members)
	m := &Matrix{Names: make([]string, n), OK: make([][]bool, n)}
	for i, mb := range c.Members {
		m.Names[i] = mb.Name
		m.OK[i] = make([]bool, n)
	}
	var notRun error
	var mu sync.Mutex
	reconcile.Parallel(n*n, meshConcurrency, func(k int) {
		i, j := k/n, k%n
		if i == j {
			return
		}
		_, _, err := ping(ctx, Check{From: c.Members[i].NS, Kind: "ping", Target: c.Members[j].Addr}, enter)
		var notEntered *enterError
		mu.Lock()
		defer mu.Unlock()
		if errors.As(err, &notEntered) && notRun == nil {
			notRun = err
		}
		m.OK[i][j] = (err == nil) != c.ExpectFail
	})
	r := Result{Check: c, Matrix: m}
	if notRun != nil {
		r.NotRun, r.Detail = true, notRun.Error()
		return r
	}
	passed, total := m.Pairs()
	r.Pass = passed == total
	what := "answered"
	if c.ExpectFail {
		what = "blocked, as expected"
	}
	r.Detail = fmt.Sprintf("%d/%d pairs %s", passed, total, what)
	if !r.Pass {
		var bad []string
		for i := range m.OK {
			for j := range m.OK[i] {
				if i != j && !m.OK[i][j] {
					bad = append(bad, m.Names[i]+" -> "+m.Names[j])
				}
			}
		}
		if len(bad) > 6 {
			bad = append(bad[:6], fmt.Sprintf("and %d more", len(bad)-6))
		}
		verb := "no reply"
		if c.ExpectFail {
			verb = "reached"
		}
		r.Detail += "; " + verb + ": " + strings.Join(bad, ", ")
	}
	return r
}

// String draws the matrix: a row per pinging namespace, "ok" where it reached
// the column's (or was blocked, expecting fail), "X" where not. Beyond 24
// namespaces, a line per namespace as Mininet's pingall prints it.
func (m *Matrix) String() string {
	var b strings.Builder
	if len(m.Names) > 24 {
		for i, from := range m.Names {
			b.WriteString(from + " ->")
			for j, to := range m.Names {
				if i == j {
					continue
				}
				if m.OK[i][j] {
					b.WriteString(" " + to)
				} else {
					b.WriteString(" X")
				}
			}
			b.WriteByte('\n')
		}
		return b.String()
	}
	width := 2
	for _, n := range m.Names {
		width = max(width, len(n))
	}
	cell := func(s string) string { return fmt.Sprintf(" %*s", width, s) }
	b.WriteString(strings.Repeat(" ", width))
	for _, n := range m.Names {
		b.WriteString(cell(n))
	}
	b.WriteByte('\n')
	for i, from := range m.Names {
		b.WriteString(fmt.Sprintf("%-*s", width, from))
		for j := range m.Names {
			switch {
			case i == j:
				b.WriteString(cell("-"))
			case m.OK[i][j]:
				b.WriteString(cell("ok"))
			default:
				b.WriteString(cell("X"))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
