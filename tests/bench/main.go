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
// steps and one per namespace for the steps inside it); and, when its Python
// package is installed, Mininet (Linux bridges, no controller) building and
// stopping the same star (up to 1000). It prints medians, ratios, the cost per
// namespace and its ratio to the cost at 1000, netlab's peak RSS, the targets
// met or missed, and writes the results as JSON. A variant publishes one port
// per namespace and reports the nftables transaction time.
package main

import (
	"bufio"
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
	"text/tabwriter"
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
	MininetS float64 `json:"mininet_s,omitempty"`
	RSSMB    float64 `json:"netlab_peak_rss_mb"`
	NftMS    float64 `json:"nft_transaction_ms,omitempty"`
	Runs     int     `json:"runs"`
}

// Report is what bench.json holds.
type Report struct {
	Where   string   `json:"where"`
	Procs   int      `json:"processes"`
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
	flag.IntVar(&cfg.insideMax, "batch-inside-max", 5000, "largest size for the per-namespace processes of the ip -batch baseline (above it, its host part only: at 10,000 the whole script takes some 14 minutes)")
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

// star describes a lab of n namespaces on bridges of at most 1000 ports each
// (a Linux bridge takes at most 1024).
type star struct {
	n       int
	publish bool
}

func (s star) bridges() int { return (s.n + 999) / 1000 }

// addr is namespace i's address on its bridge b: 10.b.x.y/16.
func (s star) addr(i int) (bridge int, addr string) {
	b, j := i/1000, i%1000+2
	return b, fmt.Sprintf("10.%d.%d.%d", b, j/256, j%256)
}

func (s star) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: star%d\nbridges:\n", s.n)
	for i := range s.bridges() {
		fmt.Fprintf(&b, "  br%d: {addresses: [10.%d.0.1/16]", i, i)
		if s.publish {
			b.WriteString(", masquerade: true")
		}
		b.WriteString("}\n")
	}
	b.WriteString("namespaces:\n")
	for i := range s.n {
		br, a := s.addr(i)
		fmt.Fprintf(&b, "  n%d:\n    interfaces: {eth0: {addresses: [%s/16]}}\n    routes: [default via 10.%d.0.1]\n", i, a, br)
		if s.publish {
			fmt.Fprintf(&b, "    publish: [\"%d:80\"]\n", 10000+i)
		}
	}
	b.WriteString("links:\n")
	for i := range s.n {
		br, _ := s.addr(i)
		fmt.Fprintf(&b, "  - [n%d:eth0, br%d:v%d]\n", i, br, i)
	}
	return b.String()
}

// perStepScript builds the star with one ip process per step, as a shell script of ip commands would.
func (s star) perStepScript() string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for i := range s.bridges() {
		fmt.Fprintf(&b, "ip link add br%d type bridge\nip addr add 10.%d.0.1/16 dev br%d\nip link set br%d up\n", i, i, i, i)
	}
	for i := range s.n {
		br, a := s.addr(i)
		fmt.Fprintf(&b, "ip netns add n%d\nip link add v%d type veth peer name eth0 netns n%d\nip link set v%d master br%d\nip link set v%d up\n", i, i, i, i, br, i)
		fmt.Fprintf(&b, "ip -n n%d addr add %s/16 dev eth0\nip -n n%d link set lo up\nip -n n%d link set eth0 up\nip -n n%d route add default via 10.%d.0.1\n", i, a, i, i, i, br)
	}
	return b.String()
}

// batchScript builds the star with ip -batch: one process for the host's steps
// (host.batch: namespaces, veths, bridges), then a script of one process per
// namespace for the steps inside it, which it returns.
func (s star) batchScript(dir string) string {
	var host strings.Builder
	for i := range s.bridges() {
		fmt.Fprintf(&host, "link add br%d type bridge\naddr add 10.%d.0.1/16 dev br%d\nlink set br%d up\n", i, i, i, i)
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	for i := range s.n {
		br, a := s.addr(i)
		fmt.Fprintf(&host, "netns add n%d\nlink add v%d type veth peer name eth0 netns n%d\nlink set v%d master br%d\nlink set v%d up\n", i, i, i, i, br, i)
		inside := fmt.Sprintf("addr add %s/16 dev eth0\nlink set lo up\nlink set eth0 up\nroute add default via 10.%d.0.1\n", a, br)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("n%d.batch", i)), []byte(inside), 0o644)
		fmt.Fprintf(&b, "ip -n n%d -batch %s/n%d.batch\n", i, dir, i)
	}
	os.WriteFile(filepath.Join(dir, "host.batch"), []byte(host.String()), 0o644)
	return b.String()
}

// teardown removes what a baseline built, with one batch.
func (s star) teardown(dir string) {
	var b strings.Builder
	for i := range s.n {
		fmt.Fprintf(&b, "netns del n%d\n", i)
	}
	for i := range s.bridges() {
		fmt.Fprintf(&b, "link del br%d\n", i)
	}
	path := filepath.Join(dir, "teardown.batch")
	os.WriteFile(path, []byte(b.String()), 0o644)
	exec.Command("ip", "-force", "-batch", path).Run()
	settle(s.n)
}

// settle waits for the kernel to finish destroying deleted namespaces, which it
// does in the background: the next measurement must not pay for this one.
func settle(n int) {
	time.Sleep(time.Duration(500+2*n) * time.Millisecond)
}

// timed runs a command and returns its wall time, peak RSS and output.
func timed(name string, args ...string) (time.Duration, float64, string) {
	cmd := exec.Command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		fail("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out)))
	}
	rss := 0.0
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = float64(ru.Maxrss) / 1024
	}
	return d, rss, string(out)
}

// timedFresh runs a command in a fresh PID namespace (with its own /proc, and
// so its own mount namespace, whose /run/netns stays a peer of the sandbox's)
// and returns its wall time and peak RSS as measured inside, by this program
// run with -timed: unshare's own start is not counted.
func timedFresh(name string, args ...string) (time.Duration, float64) {
	self, _ := os.Executable()
	argv := append([]string{"--pid", "--fork", "--mount-proc", "--propagation", "unchanged", "--kill-child",
		self, "-timed", "--", name}, args...)
	cmd := exec.Command("unshare", argv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		fail("unshare --pid %s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out)))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var secs, rss float64
	if _, err := fmt.Sscanf(lines[len(lines)-1], "timed %g %g", &secs, &rss); err != nil {
		fail("unshare --pid %s: no timing in its output:\n%s", name, tail(string(out)))
	}
	return time.Duration(secs * float64(time.Second)), rss
}

// runTimed is the -timed mode: it runs argv, passing its output through, and
// prints "timed SECONDS RSS_MB" last.
func runTimed(argv []string) int {
	if len(argv) == 0 {
		return 2
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 1
	}
	rss := 0.0
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = float64(ru.Maxrss) / 1024
	}
	fmt.Printf("\ntimed %.6f %.1f\n", d.Seconds(), rss)
	return 0
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

var nftTook = regexp.MustCompile(`msg="nft transaction".* took=([0-9.]+)(ms|µs|s)`)

var netlabOps = []string{"up", "no-op up", "incremental up (+1)", "down"}

func run(cfg config) Report {
	rep := Report{Where: "the machine's PID namespace, a private network and mount namespace", Procs: countProcs()}
	dir, _ := os.MkdirTemp("", "netlab-bench-")
	defer os.RemoveAll(dir)
	if cfg.python == "" && cfg.mininetMax > 0 {
		fmt.Fprintln(os.Stderr, "Mininet: not installed (python3 -c 'import mininet' fails), skipped")
	}
	for _, n := range cfg.sizes {
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

		ops, fresh := map[string][]time.Duration{}, map[string][]time.Duration{}
		rss := map[string]float64{}
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
		var perStep, batch, batchHost, mnUp, mnDown []time.Duration
		for rep := range reps {
			once := n < 1000 || rep == 0 // at 1000 the per-step script and Mininet take about a minute: once
			if n <= cfg.perStep && once {
				path := filepath.Join(dir, "perstep.sh")
				os.WriteFile(path, []byte(s.perStepScript()), 0o644)
				d, _, _ := timed("sh", path)
				perStep = append(perStep, d)
				s.teardown(dir)
			}
			path := filepath.Join(dir, "batch.sh")
			os.WriteFile(path, []byte(s.batchScript(dir)), 0o644)
			host, _, _ := timed("ip", "-batch", filepath.Join(dir, "host.batch"))
			batchHost = append(batchHost, host)
			if n <= cfg.insideMax {
				inside, _, _ := timed("sh", path)
				batch = append(batch, host+inside)
			}
			s.teardown(dir)
			if cfg.python != "" && n <= cfg.mininetMax && once {
				up, down := mininet(cfg.python, dir, n)
				mnUp, mnDown = append(mnUp, up), append(mnDown, down)
				settle(n)
			}
		}
		for _, op := range netlabOps {
			r := Result{N: n, Op: op, NetlabS: median(ops[op]), FreshS: median(fresh[op]), RSSMB: rss[op], Runs: reps}
			switch op {
			case "up":
				r.PerStepS, r.BatchS, r.HostS, r.MininetS = median(perStep), median(batch), median(batchHost), median(mnUp)
			case "down":
				r.MininetS = median(mnDown)
			}
			rep.Results = append(rep.Results, r)
		}
	}
	// One port published per namespace: the nftables transaction of 1000 DNATs.
	if slices.Contains(cfg.sizes, 1000) {
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
		rep.Results = append(rep.Results, Result{N: 1000, Op: "up, 1000 published ports", NetlabS: median(ups), RSSMB: peak, NftMS: median(nfts) * 1000, Runs: cfg.reps})
	}
	rep.Targets = targets(rep.Results)
	return rep
}

// findMininet returns a python3 that imports mininet (the one on PATH, or the
// system's, where Debian's package installs it), or "".
func findMininet() string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import mininet.net, mininet.nodelib").Run() == nil {
			return py
		}
	}
	return ""
}

// mininetScript builds the same star with Mininet's Python API: Linux bridges
// (brctl), no controller, hosts with an address and a default route, each
// bridge with the gateway's address, and then stops it. It runs inside the
// bench's sandbox only. Mininet's fixLimits raises machine-wide sysctls
// (fs.file-max, kernel.pty.max, net.core.*mem_max): it is disabled here.
const mininetScript = `import sys, time, json
import mininet.net, mininet.util
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.log import setLogLevel

mininet.net.fixLimits = lambda: None
mininet.util.fixLimits = lambda: None
setLogLevel('error')

n = int(sys.argv[1])
start = time.monotonic()
net = Mininet(topo=None, switch=LinuxBridge, controller=None, build=False, autoStaticArp=False)
switches = [net.addSwitch('s%d' % (b + 1)) for b in range((n + 999) // 1000)]
for i in range(n):
    b, j = i // 1000, i % 1000 + 2
    h = net.addHost('h%d' % (i + 1), ip='10.%d.%d.%d/16' % (b, j // 256, j % 256),
                    defaultRoute='via 10.%d.0.1' % b)
    net.addLink(h, switches[b])
net.build()
net.start()
for b, s in enumerate(switches):
    s.cmd('ip addr add 10.%d.0.1/16 dev %s' % (b, s.name))
up = time.monotonic() - start
start = time.monotonic()
net.stop()
down = time.monotonic() - start
print(json.dumps({'up': up, 'down': down}))
`

// mininet builds and stops the star with Mininet and returns both times.
func mininet(python, dir string, n int) (up, down time.Duration) {
	fmt.Fprintf(os.Stderr, "  Mininet, N=%d ...\n", n)
	path := filepath.Join(dir, "mininet_star.py")
	os.WriteFile(path, []byte(mininetScript), 0o644)
	cmd := exec.Command(python, path, strconv.Itoa(n))
	out, err := cmd.Output()
	if err != nil {
		msg := string(out)
		if ee, ok := err.(*exec.ExitError); ok {
			msg += string(ee.Stderr)
		}
		fail("mininet: %v\n%s", err, tail(msg))
	}
	var t struct{ Up, Down float64 }
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		json.Unmarshal(sc.Bytes(), &t)
	}
	if t.Up == 0 {
		fail("mininet: no timing in its output:\n%s", tail(string(out)))
	}
	return time.Duration(t.Up * float64(time.Second)), time.Duration(t.Down * float64(time.Second))
}

func parseDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	case "µs":
		return time.Duration(f * float64(time.Microsecond))
	}
	return time.Duration(f * float64(time.Second))
}

func median(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Seconds()
}

// Target is one of issue 16's targets, with what this run measured.
type Target struct {
	What  string `json:"what"`
	Got   string `json:"got"`
	Met   bool   `json:"met"`
	Known bool   `json:"measured"`
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
	add("N=1000 up ≤ 1.3 s", find(results, 1000, "up"), netlab, secs, at(1.3))
	add("N=1000 no-op up ≤ 0.15 s", find(results, 1000, "no-op up"), netlab, secs, at(0.15))
	add("N=1000 down ≤ 0.9 s", find(results, 1000, "down"), netlab, secs, at(0.9))
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
			if base.HostS > 0 && r.HostS > 0 {
				s += fmt.Sprintf(" (ip -batch's host part: %.2fx)", (r.HostS/float64(r.N))/(base.HostS/1000))
			}
			return s
		}
		add(fmt.Sprintf("N=%d up: cost per namespace ≤ 1.3x that at 1000", n), r, perNs, got, at(1.3))
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

func report(rep Report) {
	fmt.Printf("Measured in %s, %d processes in /proc.\n\n", rep.Where, rep.Procs)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "N\top\tnetlab\tper ns\tvs 1000\tfresh PID ns\tip per step\tratio\tip -batch\tratio\t(host part)\tMininet\tratio\tpeak RSS\tnft txn\t")
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
		fmt.Fprintf(w, "%d\t%s\t%s\t%.0f µs\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f MB\t%s\t\n", r.N, r.Op, secs(r.NetlabS), r.NetlabS/float64(r.N)*1e6, vs,
			secs(r.FreshS), secs(r.PerStepS), ratio(r.PerStepS), secs(r.BatchS), ratio(r.BatchS), secs(r.HostS), secs(r.MininetS), ratio(r.MininetS), r.RSSMB, nft)
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
