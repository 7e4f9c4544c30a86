package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
)

// Target is one of issue 16's targets, with what this run measured.
type Target struct {
	What  string `json:"what"`
	Got   string `json:"got"`
	Met   bool   `json:"met"`
	Known bool   `json:"measured"`
}

// withKernel formats netlab's time of r with the same run's figures for the
// kernel's share of that work: the iproute2 baseline named what (its value
// from base) and netlab itself with the host's IPv6 off, whose difference to
// netlab is the kernel's IPv6 work on the host ends.
func withKernel(r *Result, what string, base func(*Result) float64) func(float64) string {
	return func(v float64) string {
		s := fmt.Sprintf("%.3f s", v)
		var same []string
		if r != nil && base(r) > 0 {
			same = append(same, fmt.Sprintf("%s %.3f s", what, base(r)))
		}
		if r != nil && r.NoIPv6S > 0 {
			same = append(same, fmt.Sprintf("netlab with the host's IPv6 off %.3f s", r.NoIPv6S))
		}
		if len(same) > 0 {
			s += " (same run: " + strings.Join(same, ", ") + ")"
		}
		return s
	}
}

func find(results []Result, n int, op string) *Result {
	for i := range results {
		if results[i].N == n && results[i].Op == op {
			return &results[i]
		}
	}
	return nil
}

// targets checks the measured figures against the targets (medians, in the
// machine's PID namespace with the extra processes).
func targets(results []Result) []Target {
	var out []Target
	add := func(what string, r *Result, val func(*Result) float64, got func(float64) string, ok func(float64) bool) {
		t := Target{What: what, Got: "not measured"}
		if r != nil && val(r) > 0 {
			v := val(r)
			t.Got, t.Met, t.Known = got(v), ok(v), true
		}
		out = append(out, t)
	}
	netlab := func(r *Result) float64 { return r.NetlabS }
	secs := func(v float64) string { return fmt.Sprintf("%.3f s", v) }
	at := func(limit float64) func(float64) bool { return func(v float64) bool { return v <= limit } }
	// The up and down are shown beside what the kernel took for the same work
	// in the same run: on a virtual machine the kernel's own time varies by
	// a quarter from run to run, and at 1000 it is most of the target.
	up, down := find(results, 1000, "up"), find(results, 1000, "down")
	add("N=1000 up ≤ 1.3 s", up, netlab, withKernel(up, "ip -batch's host part", func(r *Result) float64 { return r.HostS }), at(1.3))
	add("N=1000 no-op up ≤ 0.15 s", find(results, 1000, "no-op up"), netlab, secs, at(0.15))
	add("N=1000 down ≤ 0.9 s", down, netlab, withKernel(down, "ip -batch's teardown", func(r *Result) float64 { return r.BatchS }), at(0.9))
	mn := func(r *Result) float64 {
		if r.MininetS == 0 {
			return 0
		}
		return r.MininetS / r.NetlabS
	}
	ratio := func(v float64) string { return fmt.Sprintf("%.1fx", v) }
	add("N=1000 up ≥ 10x faster than Mininet", find(results, 1000, "up"), mn, ratio, func(v float64) bool { return v >= 10 })
	add("N=1000 down ≥ 10x faster than Mininet", find(results, 1000, "down"), mn, ratio, func(v float64) bool { return v >= 10 })
	base := find(results, 1000, "up")
	for _, n := range []int{5000, 10000} {
		r := find(results, n, "up")
		perNs := func(r *Result) float64 {
			if base == nil || base.NetlabS == 0 {
				return 0
			}
			return (r.NetlabS / float64(r.N)) / (base.NetlabS / 1000)
		}
		got := func(v float64) string {
			s := fmt.Sprintf("%.2fx the cost per namespace at 1000", v)
			if base.BatchS > 0 && r.BatchS > 0 {
				s += fmt.Sprintf(" (ip -batch: %.2fx)", (r.BatchS/float64(r.N))/(base.BatchS/1000))
			}
			if base.NoIPv6S > 0 && r.NoIPv6S > 0 {
				s += fmt.Sprintf(" (netlab with the host's IPv6 off: %.2fx)", (r.NoIPv6S/float64(r.N))/(base.NoIPv6S/1000))
			}
			if base.HostS > 0 && r.HostS > 0 {
				s += fmt.Sprintf(" (ip -batch's host part: %.2fx)", (r.HostS/float64(r.N))/(base.HostS/1000))
			}
			return s
		}
		add(fmt.Sprintf("N=%d up: cost per namespace ≤ 1.3x that at 1000", n), r, perNs, got, at(1.3))
		out = append(out, kernelGrowth(r, base, n))
	}
	add("N=300 no-op up ≤ 0.1 s", find(results, 300, "no-op up"), netlab, secs, at(0.1))
	peak := func(r *Result) float64 {
		m := 0.0
		for _, x := range results {
			if x.N == r.N {
				m = max(m, x.RSSMB)
			}
		}
		return m
	}
	add("N=10000 peak RSS ≤ 100 MB", find(results, 10000, "up"), peak, func(v float64) string { return fmt.Sprintf("%.1f MB", v) }, at(100))
	return out
}

// kernelGrowth checks that where the up of n grows more than 1.3x per
// namespace from 1000 (r against base), the growth is the kernel's.
func kernelGrowth(r, base *Result, n int) Target {
	// Where it grows more, the issue asks to show that the growth is the
	// kernel's with the iproute2 baseline of the same run. Two steps, both
	// measured here: what IPv6 on the host ends adds is the kernel's by
	// construction (the same netlab, the host's IPv6 off for new
	// interfaces); what is left grows no more than ip -batch's host part,
	// which is nothing but the kernel's namespace and veth work. (The whole
	// ip -batch is no yardstick: its process per namespace grows with N on
	// its own, copying a mount namespace with every namespace's mount.)
	kernels := Target{What: fmt.Sprintf("N=%d up: what grows beyond 1.3x is the kernel's (host IPv6 off, netlab grows ≤ max(1.3x, ip -batch's host part))", n), Got: "not measured"}
	if r != nil && base != nil && r.NoIPv6S > 0 && base.NoIPv6S > 0 && r.HostS > 0 && base.HostS > 0 {
		growth := func(atN, at1000 float64) float64 { return (atN / float64(n)) / (at1000 / 1000) }
		noIPv6, host := growth(r.NoIPv6S, base.NoIPv6S), growth(r.HostS, base.HostS)
		kernels.Got = fmt.Sprintf("netlab with the host's IPv6 off %.2fx, ip -batch's host part %.2fx", noIPv6, host)
		kernels.Met, kernels.Known = noIPv6 <= max(1.3, host), true
	}
	return kernels
}

func report(rep Report) {
	fmt.Printf("Measured in %s, %d processes in /proc; the hypervisor took %.0f%% of the CPU time during the run (per size: the last column).\n\n", rep.Where, rep.Procs, rep.Steal)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "N\top\tnetlab\tper ns\tvs 1000\tfresh PID ns\thost IPv6 off\tip per step\tratio\tip -batch\tratio\t(host part)\tMininet\tratio\tpeak RSS\tnft txn\tCPU stolen\t")
	for _, r := range rep.Results {
		ratio := func(base float64) string {
			if base == 0 || r.NetlabS == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1fx", base/r.NetlabS)
		}
		secs := func(v float64) string {
			if v == 0 {
				return "-"
			}
			return fmt.Sprintf("%.3f s", v)
		}
		vs := "-"
		if b := find(rep.Results, 1000, r.Op); b != nil && b.NetlabS > 0 && r.N != 1000 && r.NetlabS > 0 {
			vs = fmt.Sprintf("%.2fx", (r.NetlabS/float64(r.N))/(b.NetlabS/1000))
		}
		nft := "-"
		if r.NftMS > 0 {
			nft = fmt.Sprintf("%.1f ms", r.NftMS)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%.0f µs\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f MB\t%s\t%.0f%%\t\n", r.N, r.Op, secs(r.NetlabS), r.NetlabS/float64(r.N)*1e6, vs,
			secs(r.FreshS), secs(r.NoIPv6S), secs(r.PerStepS), ratio(r.PerStepS), secs(r.BatchS), ratio(r.BatchS), secs(r.HostS), secs(r.MininetS), ratio(r.MininetS), r.RSSMB, nft, r.StealPct)
	}
	w.Flush()
	fmt.Println("\nTargets (issue 16; medians in the machine's PID namespace):")
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, t := range rep.Targets {
		mark := "-"
		if t.Known {
			mark = map[bool]string{true: "met", false: "MISSED"}[t.Met]
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", t.What, t.Got, mark)
	}
	w.Flush()
}
