package reconcile

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"netlab/topology"
)

// A container's identity besides its network: a hostname of its own (a UTS
// namespace netlab makes and keeps beside the network namespace, bind-mounted
// like it, entered by the namespace's processes and by `netlab exec`), and its
// /etc/hosts and /etc/resolv.conf as Docker writes them (generated files under
// /etc/netns/NS/).

// FileNames are the files netlab writes under /etc/netns/NS/.
var FileNames = []string{"hosts", "resolv.conf"}

// UTSPath is where the UTS namespace of a lab's network namespace is kept, in
// netlab's state directory (root is /run/netlab).
func UTSPath(root, lab, ns string) string { return root + "/" + lab + "/uts/" + ns }

// CreateUTS makes a UTS namespace for a network namespace, sets its hostname and
// keeps it by a bind mount.
type CreateUTS struct {
	Lab, NS, Hostname string
}

func (a CreateUTS) Op() Op               { return OpAdd }
func (a CreateUTS) Phase() Phase         { return phaseNetnsAttrs }
func (a CreateUTS) Kind() string         { return "uts" }
func (a CreateUTS) Object() string       { return a.NS + " hostname " + a.Hostname }
func (a CreateUTS) Namespaces() []string { return []string{a.NS} }
func (a CreateUTS) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyCreateUTS(ctx, a)
}
func (a CreateUTS) Commands() []string {
	path := UTSPath("/run/netlab", a.Lab, a.NS)
	return []string{
		fmt.Sprintf("mkdir -p /run/netlab/%s/uts && touch %s", a.Lab, path),
		fmt.Sprintf("unshare --uts=%s hostname %s", path, shellQuote(a.Hostname)),
	}
}

// SetHostname sets the hostname of a namespace's UTS namespace again (drift).
type SetHostname struct {
	Lab, NS, Hostname, Old string
}

func (a SetHostname) Op() Op               { return OpChange }
func (a SetHostname) Phase() Phase         { return phaseNetnsAttrs }
func (a SetHostname) Kind() string         { return "uts" }
func (a SetHostname) Namespaces() []string { return []string{a.NS} }
func (a SetHostname) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplySetHostname(ctx, a)
}
func (a SetHostname) Object() string {
	return a.NS + " hostname " + a.Old + " -> " + a.Hostname
}
func (a SetHostname) Commands() []string {
	return []string{fmt.Sprintf("nsenter --uts=%s hostname %s", UTSPath("/run/netlab", a.Lab, a.NS), shellQuote(a.Hostname))}
}

// DeleteUTS unmounts a namespace's UTS namespace: the kernel frees it once no
// process is left in it.
type DeleteUTS struct {
	Lab, NS string
}

func (a DeleteUTS) Op() Op               { return OpDelete }
func (a DeleteUTS) Phase() Phase         { return phaseDeleteFile }
func (a DeleteUTS) Kind() string         { return "uts" }
func (a DeleteUTS) Object() string       { return a.NS }
func (a DeleteUTS) Namespaces() []string { return []string{a.NS} }
func (a DeleteUTS) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyDeleteUTS(ctx, a)
}
func (a DeleteUTS) Commands() []string {
	path := UTSPath("/run/netlab", a.Lab, a.NS)
	return []string{fmt.Sprintf("umount %s && rm -f %s", path, path)}
}

// uts diffs the UTS namespaces: made where wanted, the hostname set again when
// it changed, unmounted where no longer wanted.
func (d *differ) uts() {
	for _, ns := range sortedKeys(d.desired.UTS, strings.Compare) {
		want := d.desired.UTS[ns]
		have, ok := d.observed.UTS[ns]
		switch {
		case !ok:
			d.add(CreateUTS{Lab: d.desired.Lab, NS: ns, Hostname: want})
		case have != want:
			d.add(SetHostname{Lab: d.desired.Lab, NS: ns, Hostname: want, Old: have})
		}
	}
	for _, ns := range sortedKeys(d.observed.UTS, strings.Compare) {
		if _, ok := d.desired.UTS[ns]; !ok {
			d.add(DeleteUTS{Lab: d.desired.Lab, NS: ns})
		}
	}
}

// Env is what the desired state takes from the machine rather than the file:
// the host's resolv.conf, for `resolv: host`.
type Env struct {
	ResolvConf     string // its content; "" when none could be read
	ResolvConfPath string // the file it was read from
}

// Desired is DesiredOn a machine that gives nothing: `resolv: host` then has
// Docker's fallback resolvers. Plans and tests that must not depend on the
// machine use it.
func Desired(lab *topology.Lab) (*State, error) { return DesiredOn(lab, Env{}) }

// containerFiles writes the hostnames, and the hosts and resolv.conf files of
// namespaces that give them.
func containerFiles(lab *topology.Lab, s *State, env Env) {
	for _, ns := range lab.Namespaces {
		k := lab.KernelName(ns.Name)
		if ns.Hostname != "" {
			s.UTS[k] = ns.Hostname
		}
		if len(ns.HostsLines) > 0 {
			s.Files[FileKey{NS: k, Name: "hosts"}] = hostsFile(lab.Name, ns.HostsLines, s.Files[FileKey{NS: k, Name: "hosts"}])
		}
		if ns.Resolv != nil {
			s.Files[FileKey{NS: k, Name: "resolv.conf"}] = resolvFile(lab.Name, ns.Resolv, env)
		}
	}
}

// hostsFile is the namespace's `hosts:` lines, then the names of its
// neighbours on resolving bridges that the lines do not have already (from
// the file hostsFiles made, if any).
func hostsFile(lab string, lines []topology.HostsLine, resolving string) string {
	var b strings.Builder
	b.WriteString(FileMarker(lab) + "\n")
	var have []string
	for _, l := range lines {
		line := l.Addr.String() + "\t" + strings.Join(l.Names, " ")
		have = append(have, line)
		b.WriteString(line + "\n")
	}
	for _, l := range strings.Split(resolving, "\n") {
		if l == "" || strings.HasPrefix(l, "#") || slices.Contains(have, l) {
			continue
		}
		if addr, _, _ := strings.Cut(l, "\t"); addr == "127.0.0.1" || addr == "::1" {
			continue // localhost is the lines' business
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// resolvFile is a namespace's resolv.conf. `resolv: host` is the host's, as
// Docker writes it for a container on its default bridge: its nameservers
// without the loopback ones (a resolver on the host's 127.0.0.53 is not
// reachable from the container), Google's public resolvers when none is left,
// and its search and options lines.
func resolvFile(lab string, r *topology.Resolv, env Env) string {
	var b strings.Builder
	b.WriteString(FileMarker(lab) + "\n")
	if !r.Host {
		b.WriteString("# Generated as Docker Engine does for a container on a user-defined network.\n")
		for _, a := range r.Nameservers {
			b.WriteString("nameserver " + a.String() + "\n")
		}
		if len(r.Search) > 0 {
			b.WriteString("search " + strings.Join(r.Search, " ") + "\n")
		}
		if len(r.Options) > 0 {
			b.WriteString("options " + strings.Join(r.Options, " ") + "\n")
		}
		return b.String()
	}
	servers, search, options := ParseResolvConf(env.ResolvConf)
	var kept []string
	for _, s := range servers {
		a, err := netip.ParseAddr(s)
		if err != nil || a.IsLoopback() || a.Is6() {
			continue // loopback ones are the host's own; IPv6 is off in the container
		}
		kept = append(kept, s)
	}
	from := env.ResolvConfPath
	if from == "" {
		from = "/etc/resolv.conf"
	}
	b.WriteString("# Based on the host's " + from + ", as Docker Engine copies it (loopback nameservers left out).\n")
	if len(kept) == 0 {
		// Docker falls back to Google's public resolvers here. A lab sends
		// nothing to the internet on its own, so it gets none: names other than
		// the lab's do not resolve, and the file says why.
		b.WriteString("# The host has no resolver a container can reach; Docker would use 8.8.8.8 and 8.8.4.4, netlab uses none.\n")
	}
	for _, s := range kept {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return b.String()
}

// ParseResolvConf reads the nameserver, search and options lines of a
// resolv.conf (the last search line wins, as in the resolver).
func ParseResolvConf(text string) (servers, search, options []string) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			search = slices.Clone(f[1:])
		case "options":
			options = append(options, f[1:]...)
		}
	}
	return servers, search, options
}

// HostResolvConf is where Docker reads the host's resolvers from: its
// /etc/resolv.conf, unless that only names systemd-resolved's stub
// (127.0.0.53), whose upstream servers are in /run/systemd/resolve/resolv.conf.
func HostResolvConf(read func(string) ([]byte, error)) Env {
	b, err := read("/etc/resolv.conf")
	if err != nil {
		return Env{}
	}
	env := Env{ResolvConf: string(b), ResolvConfPath: "/etc/resolv.conf"}
	if servers, _, _ := ParseResolvConf(env.ResolvConf); len(servers) == 1 && servers[0] == "127.0.0.53" {
		if b, err := read("/run/systemd/resolve/resolv.conf"); err == nil {
			env = Env{ResolvConf: string(b), ResolvConfPath: "/run/systemd/resolve/resolv.conf"}
		}
	}
	return env
}
