// Command bench measures netlab against iproute2 and Mininet on docker0-like
// stars of N namespaces (netns, a veth to a bridge, an address, lo and eth0 up,
// a default route; bridges of at most 1000 ports), side by side in one run and
// in a throwaway sandbox: `make bench`.
//
// It measures where users run: in the machine's PID namespace, whose /proc
// lists every process of the machine (a private network and mount namespace
// keep the machine's network and /run untouched), with 300 extra idle
// processes it starts and stops itself. Each netlab figure (above 2000
// namespaces, the no-op up's only) is also taken in a fresh PID namespace,
// where /proc shows almost nothing, and reported beside it: the difference is
// what observing processes costs.
//
// For each N it times netlab's up, a no-op up, an incremental up (one namespace
// more) and down, and the same topology built by two iproute2 scripts: one `ip`
// process per step (up to 1000), and `ip -batch` (one process for the host's
// steps and one per namespace for the steps inside it; its down is one
// `ip -batch` of `netns del` and `link del`, timed until the kernel has
// destroyed the namespaces, as netlab's down waits for); and, when its Python
// package is installed, Mininet (Linux bridges, no controller) building and
// stopping the same star (up to 1000). It prints medians, ratios, the cost per
// namespace and its ratio to the cost at 1000, netlab's peak RSS, the targets
// met or missed, and writes the results as JSON. A variant publishes one port
// per namespace and reports the nftables transaction time.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const sandboxEnv = "NETLAB_BENCH_SANDBOX"

type config struct {
	netlab     string
	sizes      []int
	reps       int
	bigReps    int // runs at N >= 5000
	perStep    int // largest N the one-process-per-step baseline runs for
	insideMax  int // largest N the per-namespace part of the ip -batch baseline runs for
	mininetMax int // largest N Mininet builds
	procs      int // idle processes started for the realistic process table
	freshMax   int // largest N at which every operation is also timed in a fresh PID namespace
	out        string
	python     string // a python3 that imports mininet; "" none
}

// Result is one measured operation at one size.
type Result struct {
	N        int     `json:"n"`
	Op       string  `json:"op"`
	NetlabS  float64 `json:"netlab_s"`
	FreshS   float64 `json:"netlab_fresh_pid_ns_s,omitempty"`
	PerStepS float64 `json:"iproute2_per_step_s,omitempty"`
	BatchS   float64 `json:"iproute2_batch_s,omitempty"`
	HostS    float64 `json:"iproute2_batch_host_part_s,omitempty"` // the host's ip -batch alone: the kernel's netns and veth work
	NoIPv6S  float64 `json:"netlab_host_ipv6_off_s,omitempty"`     // netlab with IPv6 off on the sandbox host's new interfaces: what the kernel's IPv6 costs
	MininetS float64 `json:"mininet_s,omitempty"`
	RSSMB    float64 `json:"netlab_peak_rss_mb"`
	NftMS    float64 `json:"nft_transaction_ms,omitempty"`
	StealPct float64 `json:"cpu_steal_pct"` // CPU time the hypervisor took from this machine while this size was measured
	Runs     int     `json:"runs"`
}

// Report is what bench.json holds.
type Report struct {
	Where   string   `json:"where"`
	Procs   int      `json:"processes"`
	Steal   float64  `json:"cpu_steal_pct"` // over the whole run (see readCPU)
	Results []Result `json:"results"`
	Targets []Target `json:"targets"`
}

func main() { os.Exit(bench()) }

func bench() (code int) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	var cfg config
	var sizes string
	var timedChild bool
	flag.StringVar(&cfg.netlab, "netlab", "bin/netlab", "the netlab binary to measure")
	flag.StringVar(&sizes, "sizes", "10,100,300,1000,2000,5000,10000", "star sizes (bridges of at most 1000 namespaces)")
	flag.IntVar(&cfg.reps, "reps", 3, "runs of each measurement (the median is reported)")
	flag.IntVar(&cfg.bigReps, "big-reps", 1, "runs of each measurement at N >= 5000")
	flag.IntVar(&cfg.perStep, "per-step-max", 1000, "largest size for the one-ip-process-per-step baseline (it is slow)")
	flag.IntVar(&cfg.insideMax, "batch-inside-max", 5000, "largest size for the per-namespace processes of the ip -batch baseline (above it, its host part only: at 10,000 the whole script takes 7-14 minutes)")
	flag.IntVar(&cfg.mininetMax, "mininet-max", 1000, "largest size Mininet builds (0: never)")
	flag.IntVar(&cfg.procs, "procs", 300, "idle processes started so that /proc looks like a desktop's")
	flag.IntVar(&cfg.freshMax, "fresh-pid-max", 2000, "largest size at which every netlab operation is also timed in a fresh PID namespace (above it: the no-op up only; -1: never)")
	flag.StringVar(&cfg.out, "json", "bench.json", "where to write the results as JSON")
	flag.BoolVar(&timedChild, "timed", false, "internal: run the command after --, print its wall time and peak RSS")
	flag.Parse()
	if timedChild {
		return runTimed(flag.Args())
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fail("bad size %q", s)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	abs, err := filepath.Abs(cfg.netlab)
	if err != nil {
		fail("%v", err)
	}
	cfg.netlab = abs
	if os.Getenv(sandboxEnv) == "" {
		return reexecInSandbox()
	}
	cfg.python = findMininet()
	stop := startIdle(cfg.procs)
	defer stop()
	rep := run(cfg)
	stop()
	report(rep)
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(cfg.out, append(b, '\n'), 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Printf("\nwritten to %s\n", cfg.out)
	return 0
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	panic(exitCode(1)) // bench recovers it, after the deferred clean-ups (the idle processes) ran
}

type exitCode int

// reexecInSandbox runs the benchmark again in new network and mount
// namespaces, with private /run and an overlaid /etc: nothing it does reaches
// the machine's own network or /run. The PID namespace stays the machine's:
// netlab sees every process, as it does where users run it. /run/netns is a
// shared mount, so that namespaces made by a netlab in a PID namespace of its
// own (and so a mount namespace of its own) appear here too.
func reexecInSandbox() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (it runs in a throwaway network namespace)")
		return 1
	}
	self, _ := os.Executable()
	script := `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/netlab /run/etc-upper /run/etc-work
mount --bind /run/netns /run/netns
mount --make-shared /run/netns
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc
ip link set lo up
exec "$0" "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), sandboxEnv+"=1")
	// Go makes the new mount namespace's mounts private: nothing mounted in it
	// reaches the machine's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// startIdle starts n idle processes (what a desktop's /proc holds besides
// netlab: daemons, shells, kernel threads) and returns what stops them, by
// their PIDs. They die with the bench too (parent-death signal).
func startIdle(n int) func() {
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("sleep", "3600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: start idle process: %v\n", err)
			break
		}
		cmds = append(cmds, cmd)
	}
	if n > 0 {
		fmt.Fprintf(os.Stderr, "started %d idle processes (%d processes in /proc)\n", len(cmds), countProcs())
	}
	return func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		cmds = nil
	}
}

func countProcs() int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

var nftTook = regexp.MustCompile(`msg="nft transaction".* took=([0-9.]+)(ms|µs|s)`)

var netlabOps = []string{"up", "no-op up", "incremental up (+1)", "down"}

func run(cfg config) Report {
	rep := Report{Where: "the machine's PID namespace, a private network and mount namespace", Procs: countProcs()}
	start := readCPU()
	dir, _ := os.MkdirTemp("", "netlab-bench-")
	defer os.RemoveAll(dir)
	if cfg.python == "" && cfg.mininetMax > 0 {
		fmt.Fprintln(os.Stderr, "Mininet: not installed (python3 -c 'import mininet' fails), skipped")
	}
	for _, n := range cfg.sizes {
		rep.Results = append(rep.Results, measureSize(cfg, dir, n)...)
	}
	// One port published per namespace: the nftables transaction of 1000 DNATs.
	if slices.Contains(cfg.sizes, 1000) {
		rep.Results = append(rep.Results, measurePublish(cfg, dir))
	}
	rep.Targets = targets(rep.Results)
	rep.Steal = readCPU().stealSince(start)
	return rep
}

// measureSize times netlab's operations and the baselines on a star of n
// namespaces: one Result per netlab operation.
func measureSize(cfg config, dir string, n int) []Result {
	fmt.Fprintf(os.Stderr, "N=%d ...\n", n)
	reps := cfg.reps
	if n >= 5000 {
		reps = cfg.bigReps
	}
	s, bigger := star{n: n}, star{n: n + 1}
	lab, labPlus := filepath.Join(dir, fmt.Sprintf("star%d.yaml", n)), filepath.Join(dir, fmt.Sprintf("star%d-plus.yaml", n))
	os.WriteFile(lab, []byte(s.yaml()), 0o644)
	// The incremental lab has the same name, one namespace more.
	os.WriteFile(labPlus, []byte(strings.Replace(bigger.yaml(), fmt.Sprintf("name: star%d\n", n+1), fmt.Sprintf("name: star%d\n", n), 1)), 0o644)

	before := readCPU()
	ops, fresh, rss := measureNetlab(cfg, n, reps, lab, labPlus)
	noIPv6 := measureWithoutHostIPv6(cfg, n, reps, lab)
	b := measureBaselines(cfg, dir, s, reps)
	steal := readCPU().stealSince(before)
	var out []Result
	for _, op := range netlabOps {
		r := Result{N: n, Op: op, NetlabS: median(ops[op]), FreshS: median(fresh[op]), RSSMB: rss[op], Runs: reps, StealPct: steal}
		switch op {
		case "up":
			r.PerStepS, r.BatchS, r.HostS, r.MininetS = median(b.perStep), median(b.batch), median(b.batchHost), median(b.mnUp)
		case "down":
			r.BatchS, r.MininetS = median(b.batchDown), median(b.mnDown)
		}
		r.NoIPv6S = median(noIPv6[op])
		out = append(out, r)
	}
	return out
}

// measureNetlab times netlab's up, no-op up, incremental up and down of a
// star of n namespaces reps times, in the machine's PID namespace and in a
// fresh one: the times of each operation, and its peak RSS.
func measureNetlab(cfg config, n, reps int, lab, labPlus string) (ops, fresh map[string][]time.Duration, rss map[string]float64) {
	ops, fresh = map[string][]time.Duration{}, map[string][]time.Duration{}
	rss = map[string]float64{}
	steps := []struct{ op, file, cmd string }{
		{"up", lab, "up"}, {"no-op up", lab, "up"}, {"incremental up (+1)", labPlus, "up"}, {"down", labPlus, "down"},
	}
	freshAll := n <= cfg.freshMax
	for range reps {
		for _, step := range steps {
			d, r, _ := timed(cfg.netlab, step.cmd, step.file)
			ops[step.op] = append(ops[step.op], d)
			rss[step.op] = max(rss[step.op], r)
			// Above fresh-pid-max, only the no-op up is timed in a fresh PID
			// namespace too (an up there takes minutes; /proc is what the
			// no-op up shows best).
			if !freshAll && cfg.freshMax >= 0 && step.op == "no-op up" {
				d, r := timedFresh(cfg.netlab, step.cmd, step.file)
				fresh[step.op] = append(fresh[step.op], d)
				rss[step.op] = max(rss[step.op], r)
			}
		}
		settle(n)
		if freshAll {
			for _, step := range steps {
				d, r := timedFresh(cfg.netlab, step.cmd, step.file)
				fresh[step.op] = append(fresh[step.op], d)
				rss[step.op] = max(rss[step.op], r)
			}
			settle(n)
		}
	}
	return ops, fresh, rss
}

// measureWithoutHostIPv6 times netlab's up and down of the star with IPv6
// turned off for the new interfaces of the sandbox's host namespace (the
// bench's own namespace, never the machine's), reps times. Each host end of
// a veth that comes up makes the kernel walk every IPv6 route of the host
// (fib6_ifup) and insert its own routes past one sibling per interface: a
// cost per namespace that grows with N, paid by anything that builds the
// star, Docker and ip included. The difference between this column and
// netlab's is that cost; what is left is netlab's own and the rest of the kernel's.
func measureWithoutHostIPv6(cfg config, n, reps int, lab string) map[string][]time.Duration {
	const knob = "/proc/sys/net/ipv6/conf/default/disable_ipv6"
	old, err := os.ReadFile(knob)
	if err != nil {
		return nil // no IPv6 in this kernel: nothing to compare
	}
	if err := os.WriteFile(knob, []byte("1"), 0); err != nil {
		fail("%v", err)
	}
	defer os.WriteFile(knob, old, 0)
	out := map[string][]time.Duration{}
	for range reps {
		up, _, _ := timed(cfg.netlab, "up", lab)
		down, _, _ := timed(cfg.netlab, "down", lab)
		out["up"], out["down"] = append(out["up"], up), append(out["down"], down)
		settle(n)
	}
	return out
}

// cpuTimes are the machine's CPU times from /proc/stat, in ticks.
type cpuTimes struct{ steal, total uint64 }

// readCPU reads the first line of /proc/stat ("cpu user nice system idle
// iowait irq softirq steal ..."). On a virtual machine, steal is the time
// the hypervisor gave the machine's CPUs to someone else: every figure taken
// meanwhile is slower by about as much, whatever netlab does.
func readCPU() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var c cpuTimes
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		if i < 8 { // guest times are already counted in user and nice
			c.total += v
		}
		if i == 7 {
			c.steal = v
		}
	}
	return c
}

// stealSince is the share of CPU time stolen since before, in percent.
func (c cpuTimes) stealSince(before cpuTimes) float64 {
	if c.total <= before.total {
		return 0
	}
	return 100 * float64(c.steal-before.steal) / float64(c.total-before.total)
}

// baselines are the times of the star built without netlab.
type baselines struct {
	perStep, batch, batchHost, batchDown, mnUp, mnDown []time.Duration
}

// measureBaselines times the iproute2 scripts and Mininet on the star s,
// reps times (the slow ones once at 1000 and above).
func measureBaselines(cfg config, dir string, s star, reps int) baselines {
	var b baselines
	n := s.n
	for rep := range reps {
		once := n < 1000 || rep == 0 // at 1000 the per-step script and Mininet take about a minute: once
		if n <= cfg.perStep && once {
			path := filepath.Join(dir, "perstep.sh")
			os.WriteFile(path, []byte(s.perStepScript()), 0o644)
			d, _, _ := timed("sh", path)
			b.perStep = append(b.perStep, d)
			s.teardown(dir)
		}
		path := filepath.Join(dir, "batch.sh")
		os.WriteFile(path, []byte(s.batchScript(dir)), 0o644)
		host, _, _ := timed("ip", "-batch", filepath.Join(dir, "host.batch"))
		b.batchHost = append(b.batchHost, host)
		if n <= cfg.insideMax {
			inside, _, _ := timed("sh", path)
			b.batch = append(b.batch, host+inside)
			// Torn down as it stands after the whole script: with its
			// peers up, a host end has IPv6 to take down.
			b.batchDown = append(b.batchDown, s.teardown(dir))
		} else {
			s.teardown(dir)
		}
		if cfg.python != "" && n <= cfg.mininetMax && once {
			up, down := mininet(cfg.python, dir, n)
			b.mnUp, b.mnDown = append(b.mnUp, up), append(b.mnDown, down)
			settle(n)
		}
	}
	return b
}

// measurePublish times netlab's up of 1000 namespaces with one published
// port each, and the nftables transaction it logs.
func measurePublish(cfg config, dir string) Result {
	fmt.Fprintln(os.Stderr, "N=1000, one published port each ...")
	s := star{n: 1000, publish: true}
	lab := filepath.Join(dir, "publish1000.yaml")
	os.WriteFile(lab, []byte(s.yaml()), 0o644)
	var ups, nfts []time.Duration
	peak := 0.0
	for range cfg.reps {
		d, r, out := timed(cfg.netlab, "up", "-v", lab)
		ups, peak = append(ups, d), max(peak, r)
		if m := nftTook.FindStringSubmatch(out); m != nil {
			nfts = append(nfts, parseDuration(m[1], m[2]))
		}
		timed(cfg.netlab, "down", lab)
		settle(1000)
	}
	return Result{N: 1000, Op: "up, 1000 published ports", NetlabS: median(ups), RSSMB: peak, NftMS: median(nfts) * 1000, Runs: cfg.reps}
}
