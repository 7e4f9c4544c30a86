package reconcile

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Processes: the `run:` commands and `serve:` services of a namespace are
// long-running processes that `up` starts and `down` stops. The kernel holds
// their ownership: the driver starts each entry in a cgroup of its own (or,
// without cgroup v2, records its PID and start time), and a process inside a
// lab namespace is the lab's by that namespace. Each also gets NETLAB_LAB=LAB,
// NETLAB_NS=NAMESPACE and NETLAB_RUN=COMMAND in its environment: information
// for the user (a process may drop its environment), never proof.

// Environment variables that tell which lab entry a process was started for.
const (
	EnvLab = "NETLAB_LAB"
	EnvNS  = "NETLAB_NS"
	EnvRun = "NETLAB_RUN"
)

// ProcKey identifies a process of a lab: its namespace and its command line as
// written in the file (for `serve:`, the equivalent `netlab serve` command).
type ProcKey struct {
	NS      string
	Command string
}

func (k ProcKey) compare(o ProcKey) int {
	if c := strings.Compare(k.NS, o.NS); c != 0 {
		return c
	}
	return strings.Compare(k.Command, o.Command)
}

// Process is a long-running process in a namespace.
type Process struct {
	ProcKey
	// Serve is the built-in service netlab runs (netlab serve ...), nil for a
	// `run:` command, which runs as `sh -c COMMAND`.
	Serve *Service
	PIDs  []int // observed only
	// Unstoppable, observed only, says why this run cannot stop the process
	// ("" when it can): a plan that would stop it is refused before any change.
	Unstoppable string
	// NotReady, observed only, says that the run that started the process
	// ended before the process was ready (killed while it waited): it runs,
	// but nothing ever saw it ready, so the next up starts it again.
	NotReady bool
	// Ready is what `up` waits for once the process has started; nil: started
	// is enough. Desired only: it is how up waits, not what runs, so a change
	// of ready: or timeout: alone does not restart a running process.
	Ready *Ready
}

// Ready is the condition that makes a started process ready (see
// topology.Ready), and how long up waits for it.
type Ready struct {
	Kind    string // "tcp", "udp" (a proxy's port), "http" or "file"
	Port    int    // tcp, udp
	URL     string // http
	Path    string // file
	Timeout time.Duration
}

// String is the condition as the plan shows it: "tcp 8000", "http URL", "file PATH".
func (r *Ready) String() string {
	switch r.Kind {
	case "tcp", "udp":
		return fmt.Sprintf("%s %d", r.Kind, r.Port)
	case "http":
		return "http " + r.URL
	}
	return "file " + r.Path
}

// waitCommand is the shell equivalent of waiting for the condition in ns.
func (r *Ready) waitCommand(ns string) string {
	var until string
	switch r.Kind {
	case "tcp":
		until = fmt.Sprintf("%sss -Hltn %s | grep -q .", nsExec(ns), shellQuote(fmt.Sprintf("sport = :%d", r.Port)))
	case "udp":
		until = fmt.Sprintf("%sss -Hlun %s | grep -q .", nsExec(ns), shellQuote(fmt.Sprintf("sport = :%d", r.Port)))
	case "http":
		// --noproxy: as up, straight to the address, whatever http_proxy says.
		host := r.URL
		if u, err := url.Parse(r.URL); err == nil {
			host = u.Hostname()
		}
		until = fmt.Sprintf("%scurl --noproxy %s -fso /dev/null %s", nsExec(ns), shellQuote(host), shellQuote(r.URL))
	default:
		until = "[ -e " + shellQuote(r.Path) + " ]"
	}
	return fmt.Sprintf("timeout %gs sh -c %s", r.Timeout.Seconds(), shellQuote("until "+until+"; do sleep 0.1; done"))
}

// Service is a built-in server of `netlab serve`.
type Service struct {
	Kind  string // "http", "tcp-echo", "dns" or "proxy"
	Port  int    // dns: on 127.0.0.11; proxy: the host port
	Body  string
	DNS   *DNSServer   // dns (see dns.go)
	Proxy *ProxyServer // proxy (see proxy.go)
}

// Args are the arguments of `netlab serve` that run the service.
func (s *Service) Args() []string {
	switch s.Kind {
	case "dns":
		return s.dnsArgs()
	case "proxy":
		return s.proxyArgs()
	}
	args := []string{"serve", "--" + s.Kind, fmt.Sprint(s.Port)}
	if s.Kind == "http" {
		args = append(args, "--body", s.Body)
	}
	return args
}

// CommandLine is the service as a shell command line.
func (s *Service) CommandLine() string {
	quoted := []string{"netlab"}
	for _, a := range s.Args() {
		quoted = append(quoted, shellQuote(a))
	}
	return strings.Join(quoted, " ")
}

// LogFile is where the output of a lab's processes in one namespace goes.
func LogFile(stateDir, lab, ns string) string {
	return stateDir + "/" + lab + "/" + ns + ".log"
}

// StartProcess starts a process in a namespace, detached, its output appended
// to the namespace's log file.
type StartProcess struct {
	Lab string
	Process
}

// Unbounded says that the starts of a plan's processes all run at once, not
// within the apply's worker limit: most of a start is waiting for the process
// to be ready, which may take another process of the same plan (a proxy waits
// for its backend), and a limit full of waits would never start that one. The
// driver bounds the work itself.
func (a StartProcess) Unbounded() bool { return true }

func (a StartProcess) Op() Op       { return OpAdd }
func (a StartProcess) Phase() Phase { return phaseProcess }
func (a StartProcess) Kind() string { return "process" }
func (a StartProcess) Object() string {
	if a.Ready != nil && a.Serve == nil {
		return fmt.Sprintf("%s: %s (ready: %s, within %s)", a.NS, a.Command, a.Ready, a.Ready.Timeout)
	}
	return a.NS + ": " + a.Command
}
func (a StartProcess) Commands() []string {
	// netlab starts it as up does: inside the entry's cgroup, its output
	// appended to the namespace's log, marked with NETLAB_LAB, NETLAB_NS and
	// NETLAB_RUN (see Argv; reconcile/kernel's cgroup.go).
	quoted := make([]string, 0, 3)
	for _, arg := range a.Argv() {
		quoted = append(quoted, shellQuote(arg))
	}
	if a.Serve != nil {
		quoted = append([]string{"netlab"}, quoted[1:]...)
	}
	cmds := []string{fmt.Sprintf("netlab __start %s %s -- %s  # as up does: in a cgroup of its own, output to %s",
		a.Lab, a.NS, strings.Join(quoted, " "), LogFile("/run/netlab", a.Lab, a.NS))}
	if a.Ready != nil {
		cmds = append(cmds, a.Ready.waitCommand(a.NS))
	}
	return cmds
}

func (a StartProcess) Namespaces() []string { return []string{a.NS} }
func (a StartProcess) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyStartProcess(ctx, a)
}

// Argv is what the process runs: sh -c COMMAND, or for a built-in service
// netlab serve ... (argv[0] is "netlab").
func (p Process) Argv() []string {
	if p.Serve != nil {
		return append([]string{"netlab"}, p.Serve.Args()...)
	}
	return []string{"sh", "-c", p.Command}
}

// ProcessFromArgv is the process entry that runs argv (the inverse of Argv),
// for `netlab __start`.
func ProcessFromArgv(ns string, argv []string) (Process, error) {
	switch {
	case len(argv) == 3 && argv[0] == "sh" && argv[1] == "-c":
		return Process{ProcKey: ProcKey{NS: ns, Command: argv[2]}}, nil
	case len(argv) >= 4 && argv[0] == "netlab" && argv[1] == "serve":
		if s, err := ServiceFromArgs(argv[1:]); err == nil && slices.Equal(s.Args(), argv[1:]) {
			return Process{ProcKey: ProcKey{NS: ns, Command: s.CommandLine()}, Serve: s}, nil
		}
	}
	return Process{}, fmt.Errorf("want sh -c COMMAND or netlab serve ..., not %q", argv)
}

// StopProcess stops a process (SIGTERM, then SIGKILL).
type StopProcess struct {
	Lab string
	Process
	Why string
}

func (a StopProcess) Op() Op       { return OpDelete }
func (a StopProcess) Phase() Phase { return phaseStopProcess }
func (a StopProcess) Kind() string { return "process" }
func (a StopProcess) Object() string {
	s := fmt.Sprintf("%s: %s (pid %s)", a.NS, a.Command, pids(a.PIDs))
	if a.Why != "" {
		s += " (" + a.Why + ")"
	}
	return s
}
func (a StopProcess) Commands() []string {
	return []string{"kill " + pids(a.PIDs)}
}

func (a StopProcess) Namespaces() []string                         { return []string{a.NS} }
func (a StopProcess) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyStopProcess(ctx, a) }

func pids(list []int) string {
	s := make([]string, len(list))
	for i, p := range list {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, " ")
}

// Generated files: /etc/netns/NS/hosts gives a namespace the names of its
// neighbours on resolving bridges; `ip netns exec` and `netlab exec` mount it
// over /etc/hosts. Its first line is the lab's marker.

// FileKey is a file of a namespace under /etc/netns/NS/.
type FileKey struct {
	NS   string
	Name string // "hosts"
}

func (k FileKey) compare(o FileKey) int {
	if c := strings.Compare(k.NS, o.NS); c != 0 {
		return c
	}
	return strings.Compare(k.Name, o.Name)
}

// Path is the file's path in the iproute2 layout.
func (k FileKey) Path() string { return "/etc/netns/" + k.NS + "/" + k.Name }

// FileMarker is the first line of a file netlab writes for lab.
func FileMarker(lab string) string {
	return "# " + Marker(lab) + ": written by netlab; `netlab up` rewrites it and `netlab down` removes it"
}

// WriteFile writes a generated file.
type WriteFile struct {
	FileKey
	Content string
	Old     bool // the file exists (with other content)
}

func (a WriteFile) Op() Op {
	if a.Old {
		return OpChange
	}
	return OpAdd
}
func (a WriteFile) Phase() Phase   { return phaseFile }
func (a WriteFile) Kind() string   { return "file" }
func (a WriteFile) Object() string { return a.Path() }
func (a WriteFile) Details() []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(a.Content, "\n"), "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}
func (a WriteFile) Commands() []string {
	return []string{fmt.Sprintf("mkdir -p /etc/netns/%s && cat >%s <<'EOF'\n%sEOF", a.NS, a.Path(), a.Content)}
}

func (a WriteFile) Namespaces() []string                         { return []string{a.NS} }
func (a WriteFile) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyWriteFile(ctx, a) }

// DeleteFile removes a generated file (and its directory when empty).
type DeleteFile struct{ FileKey }

func (a DeleteFile) Op() Op         { return OpDelete }
func (a DeleteFile) Phase() Phase   { return phaseDeleteFile }
func (a DeleteFile) Kind() string   { return "file" }
func (a DeleteFile) Object() string { return a.Path() }
func (a DeleteFile) Commands() []string {
	return []string{fmt.Sprintf("rm -f %s && rmdir --ignore-fail-on-non-empty /etc/netns/%s", a.Path(), a.NS)}
}

func (a DeleteFile) Namespaces() []string                         { return []string{a.NS} }
func (a DeleteFile) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyDeleteFile(ctx, a) }
