package main

import (
	"fmt"
	"io"
	"strings"

	"netlab/reconcile/probe"
	"netlab/topology"
)

// compileExtraCheck resolves a mesh or throughput check: each namespace is
// reached at its first address (topology.FirstAddress); ok is false for the
// other kinds.
func compileExtraCheck(lab *topology.Lab, c *topology.Check, kname func(string) string) (probe.Check, bool) {
	addr := func(ns string) string {
		a, _ := topology.FirstAddress(lab, ns)
		return a.String()
	}
	switch c.Kind {
	case "mesh":
		pc := probe.Check{Kind: "mesh", ExpectFail: c.ExpectFail}
		for _, name := range c.Mesh {
			pc.Members = append(pc.Members, probe.Member{Name: name, NS: kname(name), Addr: addr(name)})
		}
		names := strings.Join(c.Mesh, " ")
		if len(c.Mesh) > 6 {
			names = fmt.Sprintf("%s ... %s (%d)", strings.Join(c.Mesh[:3], " "), c.Mesh[len(c.Mesh)-1], len(c.Mesh))
		}
		pc.Name = "mesh " + names + " -> ping"
		if c.ExpectFail {
			pc.Name += " (expect fail)"
		}
		return pc, true
	case "throughput":
		pc := probe.Check{Kind: "throughput", From: kname(c.From), Sink: kname(c.Target), Target: addr(c.Target), MinRate: c.MinRate, MaxRate: c.MaxRate}
		pc.Name = fmt.Sprintf("%s -> throughput %s (%s)", c.From, c.Target, pc.Target)
		return pc, true
	}
	return probe.Check{}, false
}

// printMatrices prints the matrix of each mesh check after the table.
func printMatrices(w io.Writer, results []probe.Result) {
	for _, r := range results {
		if r.Matrix == nil || r.NotRun {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n%s\n", topology.Printable(r.Name), topology.PrintableLines(strings.TrimSuffix(r.Matrix.String(), "\n")))
	}
}
