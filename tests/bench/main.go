// Command bench measures netlab against iproute2 on docker0-like stars of N
// namespaces (netns, a veth to one bridge, an address, lo and eth0 up, a default
// route), side by side in one run and in a throwaway sandbox: `make bench`.
//
// For each N it times netlab's up, a no-op up, an incremental up (one namespace
// more) and down, and the same topology built by two iproute2 scripts: one `ip`
// process per step, and `ip -batch` (one process for the host's steps and one per
// namespace for the steps inside it). It prints medians, the ratio to each
// baseline, the cost per namespace and netlab's peak RSS, and writes them as JSON.
// A variant publishes one port per namespace and reports the nftables
// transaction time.
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
	"text/tabwriter"
	"time"
)

const sandboxEnv = "NETLAB_BENCH_SANDBOX"

type config struct {
	netlab  string
	sizes   []int
	reps    int
	perStep int // largest N the one-process-per-step baseline runs for
	out     string
}

// Result is one measured operation at one size.
type Result struct {
	N        int     `json:"n"`
	Op       string  `json:"op"`
	NetlabS  float64 `json:"netlab_s"`
	PerStepS float64 `json:"iproute2_per_step_s,omitempty"`
	BatchS   float64 `json:"iproute2_batch_s,omitempty"`
	RSSMB    float64 `json:"netlab_peak_rss_mb"`
	NftMS    float64 `json:"nft_transaction_ms,omitempty"`
	Runs     int     `json:"runs"`
}

func main() {
	var cfg config
	var sizes string
	flag.StringVar(&cfg.netlab, "netlab", "bin/netlab", "the netlab binary to measure")
	flag.StringVar(&sizes, "sizes", "10,100,1000,2000", "star sizes (2000 is two bridges of 1000)")
	flag.IntVar(&cfg.reps, "reps", 3, "runs of each measurement (the median is reported)")
	flag.IntVar(&cfg.perStep, "per-step-max", 1000, "largest size for the one-ip-process-per-step baseline (it is slow)")
	flag.StringVar(&cfg.out, "json", "bench.json", "where to write the results as JSON")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
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
		os.Exit(reexecInSandbox())
	}
	results := run(cfg)
	report(results)
	b, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(cfg.out, append(b, '\n'), 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Printf("\nwritten to %s\n", cfg.out)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// reexecInSandbox runs the benchmark again in new network, mount and PID
// namespaces, with private /run and an overlaid /etc: nothing it does reaches the
// machine's own network, and every process it starts dies with it.
func reexecInSandbox() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (it runs in a throwaway network namespace)")
		return 1
	}
	self, _ := os.Executable()
	script := `set -e
mount -t proc proc /proc
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/etc-upper /run/etc-work
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc
ip link set lo up
exec "$0" "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), sandboxEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Unshareflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// star describes a lab of n namespaces on bridges of at most 1000 ports each.
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

// batchScript builds the star with ip -batch: one process for the host's steps,
// one per namespace for the steps inside it.
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
	return "ip -batch " + dir + "/host.batch\n" + b.String()
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

// timed runs a command and returns its wall time and peak RSS.
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

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

var nftTook = regexp.MustCompile(`msg="nft transaction".* took=([0-9.]+)(ms|µs|s)`)

func run(cfg config) []Result {
	var results []Result
	dir, _ := os.MkdirTemp("", "netlab-bench-")
	defer os.RemoveAll(dir)
	for _, n := range cfg.sizes {
		fmt.Fprintf(os.Stderr, "N=%d ...\n", n)
		s, bigger := star{n: n}, star{n: n + 1}
		lab, labPlus := filepath.Join(dir, fmt.Sprintf("star%d.yaml", n)), filepath.Join(dir, fmt.Sprintf("star%d-plus.yaml", n))
		os.WriteFile(lab, []byte(s.yaml()), 0o644)
		// The incremental lab has the same name, one namespace more.
		os.WriteFile(labPlus, []byte(strings.Replace(bigger.yaml(), fmt.Sprintf("name: star%d\n", n+1), fmt.Sprintf("name: star%d\n", n), 1)), 0o644)

		ops := map[string][]time.Duration{}
		rss := map[string]float64{}
		for range cfg.reps {
			for _, step := range []struct{ op, file, cmd string }{
				{"up", lab, "up"}, {"no-op up", lab, "up"}, {"incremental up (+1)", labPlus, "up"}, {"down", labPlus, "down"},
			} {
				d, r, _ := timed(cfg.netlab, step.cmd, step.file)
				ops[step.op] = append(ops[step.op], d)
				rss[step.op] = max(rss[step.op], r)
			}
			settle(n)
		}
		var perStep, batch []time.Duration
		for rep := range cfg.reps {
			if n <= cfg.perStep && (n < 1000 || rep == 0) { // at 1000 the per-step script takes about a minute: once
				path := filepath.Join(dir, "perstep.sh")
				os.WriteFile(path, []byte(s.perStepScript()), 0o644)
				d, _, _ := timed("sh", path)
				perStep = append(perStep, d)
				s.teardown(dir)
			}
			path := filepath.Join(dir, "batch.sh")
			os.WriteFile(path, []byte(s.batchScript(dir)), 0o644)
			d, _, _ := timed("sh", path)
			batch = append(batch, d)
			s.teardown(dir)
		}
		for _, op := range []string{"up", "no-op up", "incremental up (+1)", "down"} {
			r := Result{N: n, Op: op, NetlabS: median(ops[op]), RSSMB: rss[op], Runs: cfg.reps}
			if op == "up" {
				r.PerStepS, r.BatchS = median(perStep), median(batch)
			}
			results = append(results, r)
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
		results = append(results, Result{N: 1000, Op: "up, 1000 published ports", NetlabS: median(ups), RSSMB: peak, NftMS: median(nfts) * 1000, Runs: cfg.reps})
	}
	return results
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

func report(results []Result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "N\top\tnetlab\tper ns\tip per step\tratio\tip -batch\tratio\tpeak RSS\tnft txn\t")
	for _, r := range results {
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
		nft := "-"
		if r.NftMS > 0 {
			nft = fmt.Sprintf("%.1f ms", r.NftMS)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%.0f µs\t%s\t%s\t%s\t%s\t%.1f MB\t%s\t\n", r.N, r.Op, secs(r.NetlabS), r.NetlabS/float64(r.N)*1e6,
			secs(r.PerStepS), ratio(r.PerStepS), secs(r.BatchS), ratio(r.BatchS), r.RSSMB, nft)
	}
	w.Flush()
}
