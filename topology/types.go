// Package topology reads a netlab lab file: strict parsing that keeps the source
// position of every value, and validation that reports every problem at once as
// FILE:LINE:COL: message. It is pure Go: nothing here touches the kernel.
//
// The flow is Load (or Parse then Validate). Validate also resolves what the file
// leaves implicit (which namespace a link end lives in, generated bridge-port names,
// the device of a route), so that the reconciler never has to guess.
package topology

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// HostName is the reserved name of the network namespace netlab runs in.
const HostName = "host"

// Pos is a 1-based position in the lab file.
type Pos struct{ Line, Col int }

// Lab is one parsed lab file.
type Lab struct {
	File        string // the file name errors are reported against
	Name        string // [a-z0-9][a-z0-9-]{0,23}
	NamePos     Pos
	Description string
	NetnsPrefix string // prepended to every namespace's kernel name

	Host       *Namespace   // the `host:` section; never nil after Parse (Name is HostName)
	Bridges    []*Bridge    // in file order
	Namespaces []*Namespace // in file order; never contains the host
	Links      []*Link      // in file order
	Checks     []*Check     // in file order

	ranges map[Pos]*rangeInfo // positions inside ranges, for their errors (ranges.go)
	source []byte             // the file as parsed, for ExpandedYAML (see there)
}

// Bridge is a Linux bridge ("docker0").
type Bridge struct {
	Pos       Pos
	Name      string
	Namespace string // HostName unless `namespace:` is given
	Addresses []Address
	MTU       int              // 0: kernel default
	MAC       net.HardwareAddr // nil: kernel's choice
	// SnoopingOff (`multicast-snooping: false`): the bridge floods multicast to
	// every port instead of only to those that joined its group; the kernel's
	// default, and Docker's, is on.
	SnoopingOff bool

	// Docker's bridge driver options.
	Masquerade bool  // SNAT the bridge's subnets when leaving by another interface
	ICC        *bool // nil: true. Ports of this bridge may talk to each other
	Isolated   bool  // no forwarding between two isolated bridges
	// Internal (`docker network create --internal`): nothing is forwarded in or
	// out of the bridge, only between its ports; no masquerade, no published port.
	Internal bool
	// Resolve: the namespaces linked to this bridge find each other by name, as on
	// a Docker user-defined network (the default bridge does not).
	Resolve bool
	// UserlandProxy: published ports of this bridge are also served by a proxy
	// process, as dockerd's default docker-proxy does, and the NAT follows
	// Docker's proxy mode (see reconcile/proxy.go). false: --userland-proxy=false.
	UserlandProxy bool
	// Iptables (`firewall: iptables`): the bridge's rules are written as dockerd
	// writes them, in the shared tables ip filter / ip nat with iptables-nft's
	// encoding (reconcile/iptables.go), instead of in the lab's own table.
	Iptables bool
	// Nftables (`firewall: nftables`): the bridge's rules are written as
	// Docker 29 writes them with --firewall-backend=nftables, in its tables
	// ip docker-bridges and ip6 docker-bridges (reconcile/nftables.go).
	Nftables bool
	// DockerVersion (`docker-version`, one of DockerVersions; "" is
	// DefaultDockerVersion) is the dockerd release whose iptables layout
	// `firewall: iptables` writes: 20.10 and 26.1 share one, 28 and 29 have
	// their own (reconcile/iptables_docker.go).
	DockerVersion string

	// Resolved by Validate: the link ends that are ports of this bridge, in file order.
	Ports []*End
}

// Address is an interface address with its prefix length, as in `ip addr add`:
// 172.17.0.2/16 keeps the host bits (Prefix.Addr() is the address, Prefix.Masked()
// the subnet).
type Address struct {
	Pos    Pos
	Prefix netip.Prefix
}

// Namespace is a network namespace of the lab, or the host (Name == HostName).
type Namespace struct {
	Pos        Pos
	Name       string // the key in the file; the kernel name is Lab.KernelName(Name)
	Interfaces []*Interface
	Routes     []*Route
	Sysctls    []*Sysctl
	NAT        []*NATRule
	Filter     []*FilterRule
	Publish    []*Publish
	Run        []*Command
	Serve      []*Service
	Exec       []*Exec // one-shot setup commands, in file order

	// Hostname, when set, gives the namespace a UTS namespace of its own with
	// this hostname (a container's); its processes and `netlab exec` enter it.
	Hostname string
	// HostsLines are the `hosts:` lines of its /etc/hosts ("ADDR NAME..."),
	// after localhost when none is given; Resolv, its /etc/resolv.conf. Both
	// nil: the host's.
	HostsLines []HostsLine
	Resolv     *Resolv

	// Resolved by Validate.
	Ends  []*End       // the link ends in this namespace that are not bridge ports, in file order
	Hosts []HostsEntry // its /etc/hosts when it is on a bridge with resolve: true; nil: none
}

// HostsLine is one `hosts:` line: an address and its names.
type HostsLine struct {
	Pos   Pos
	Addr  netip.Addr
	Names []string
}

// HostsEntry is one line of a namespace's generated /etc/hosts: an address and
// the names it answers to. Validate lists the loopback lines first, then each
// namespace on the same resolving bridges (itself included) with its address
// there, in file order, as Docker's embedded DNS answers on a user-defined
// network.
type HostsEntry struct {
	Addr  netip.Addr
	Names []string
}

// Resolve answers a name as the namespace's resolver does (`getent hosts NAME`
// inside it): its /etc/hosts first (the `hosts:` lines, then the entries of its
// resolving bridges), then its embedded DNS server (`serve: dns`, which its
// resolv.conf points at), as glibc reads files before DNS.
func (ns *Namespace) Resolve(name string) (netip.Addr, bool) {
	if ns == nil {
		return netip.Addr{}, false
	}
	for _, l := range ns.HostsLines {
		if slices.Contains(l.Names, name) {
			return l.Addr, true
		}
	}
	for _, e := range ns.Hosts {
		if slices.Contains(e.Names, name) {
			return e.Addr, true
		}
	}
	for _, svc := range ns.Serve {
		if svc.DNS == nil {
			continue
		}
		for _, n := range svc.DNS.Names {
			if strings.EqualFold(n.Name, strings.TrimSuffix(name, ".")) && len(n.Addrs) > 0 {
				return n.Addrs[0], true
			}
		}
	}
	return netip.Addr{}, false
}

// Resolv is a namespace's `resolv:`: "host" (the host's resolvers, loopback
// ones left out as Docker does on its default bridge) or its own nameservers.
type Resolv struct {
	Pos         Pos
	Host        bool
	Nameservers []netip.Addr
	Search      []string
	Options     []string
}

// Interface configures one end of a link that lives in a namespace (not a bridge port).
type Interface struct {
	Pos       Pos
	Name      string
	Addresses []Address
	MAC       net.HardwareAddr // nil: kernel's choice
	MTU       int              // 0: kernel default
}

// Route is a route in the main table. `default` is 0.0.0.0/0 or ::/0 by the family of Via.
type Route struct {
	Pos    Pos
	To     netip.Prefix
	Via    netip.Addr // invalid (zero) for a device route
	Dev    string     // as written, or resolved by Validate from the gateway's subnet
	Metric int
}

// Sysctl is one net.* sysctl of a namespace. Key uses dots (net.ipv4.ip_forward) or,
// when an interface name contains a dot, slashes (net/ipv4/conf/eth0.100/forwarding).
type Sysctl struct {
	Pos   Pos
	Key   string
	Value string
}

// Link is a veth pair: what the file calls a link. (In reconcile, each end is
// an Interface.)
type Link struct {
	Pos  Pos
	Ends [2]*End

	// The map form's settings (links_map.go); zero in the list form.
	Shaping Shaping // the queue on each end's egress
	MTU     int     // both ends' MTU; 0: as the ends' interfaces or bridges say
	Down    bool    // state: down: both ends administratively down
}

// End is one end of a link as written (NAMESPACE:IFNAME, host:IFNAME, BRIDGE or
// BRIDGE:IFNAME) plus what Validate resolves. After Validate, an end knows its
// interface, its peer and its bridge: nothing downstream searches the lab again.
type End struct {
	Pos  Pos
	Text string // as written

	// Resolved by Validate.
	Namespace string     // the namespace the interface lives in (HostName for the host)
	Interface string     // the interface name; generated for a bridge port written without one
	Bridge    string     // non-empty when this end is a port of that bridge
	OnBridge  *Bridge    // the bridge named by Bridge; nil when Bridge is ""
	Peer      *End       // the other end of the link
	Config    *Interface // its `interfaces:` entry; nil for a bridge port, or an end without one
}

// Iface is an interface match in a rule; "!eth0" sets Not.
type Iface struct {
	Name string
	Not  bool
}

// PortRange is a port or an inclusive range; the zero value matches any port.
type PortRange struct{ First, Last uint16 }

// NATRule is one rule of a namespace's `nat:` list.
type NATRule struct {
	Pos    Pos
	Action string // "masquerade", "snat" or "dnat"
	Source netip.Prefix
	Dest   netip.Prefix
	In     Iface
	Out    Iface
	Proto  string    // "", "tcp" or "udp"
	Port   PortRange // destination port matched (dnat)
	To     netip.Addr
	ToPort PortRange // dnat target port; zero keeps the port
}

// FilterRule is one rule of a namespace's `filter:` list.
type FilterRule struct {
	Pos    Pos
	Chain  string // "forward", "input" or "output"
	In     Iface
	Out    Iface
	Source netip.Prefix
	Dest   netip.Prefix
	Proto  string // "", "tcp", "udp", "icmp" or "icmpv6"
	SPort  PortRange
	DPort  PortRange
	State  []string // "new", "established", "related", "invalid"
	Action string   // "accept", "drop" or "reject"
}

// Publish is one `publish:` entry, docker run -p [HOST_IP:]HOST_PORT:PORT[/PROTO].
type Publish struct {
	Pos      Pos
	Text     string
	HostIP   netip.Addr // invalid: every address of the host
	HostPort uint16
	Port     uint16
	Proto    string // "tcp" or "udp"
}

// Command is one `run:` entry: a long-running process started in the namespace.
type Command struct {
	Pos  Pos
	Line string
	// Ready, when not nil, is what `up` waits for after starting the process
	// (the map form {cmd, ready, timeout}); nil: started is enough.
	Ready *Ready
	// Timeout is how long `up` waits for Ready; 0: DefaultReadyTimeout.
	Timeout time.Duration
}

// DefaultReadyTimeout is how long `up` waits for a process to be ready when the
// file gives no timeout: for `serve:` entries, and `run:` entries with `ready:`.
const DefaultReadyTimeout = 10 * time.Second

// MaxReadyTimeout bounds `timeout:`: up waits for a process, not for a person.
const MaxReadyTimeout = 10 * time.Minute

// Ready is the condition that makes a process ready, one of:
//
//	{tcp: PORT}   a socket listens on PORT in the process's namespace
//	{http: URL}   a GET of URL, made from inside the namespace, answers 2xx or 3xx
//	{file: PATH}  PATH exists
type Ready struct {
	Pos  Pos
	Kind string // "tcp", "http" or "file"
	Port uint16 // tcp
	URL  string // http: http://IP[:PORT]/...
	Path string // file: absolute
}

// Exec is one `exec:` entry: a one-shot command that `up` runs once, with sh -c
// in the namespace, after its links, addresses and routes exist and before its
// processes start.
type Exec struct {
	Pos  Pos
	Line string
}

// Service is one `serve:` entry: a small server netlab itself runs in the
// namespace, so a lab needs no tool the machine may lack.
type Service struct {
	Pos  Pos
	Kind string // "http" (answers every request with Body), "tcp-echo" or "dns"
	Port uint16 // dns: the port on 127.0.0.11 that port 53 is translated to
	Body string // http: the response body; "Hello World" when not given
	DNS  *DNSService
}

// Check is one entry of `checks:`, run by `netlab test`.
type Check struct {
	Pos    Pos
	From   string // a namespace name, or HostName
	Kind   string // "ping", "tcp", "http", "traceroute", "mesh" or "throughput"
	Target string // an address, ADDR:PORT, or a URL; the host may be a namespace's name

	ExpectFail   bool
	ExpectStatus int          // http: 0 means 200
	ExpectBody   string       // http: a substring of the body
	ExpectSource netip.Addr   // the source address the far end saw
	ExpectHops   []netip.Addr // traceroute: every hop, the destination last

	// Kind "mesh" (checks_extra.go): ping every ordered pair of Mesh, from the
	// first address of each; From is empty.
	Mesh []string
	// Kind "throughput": Target is the namespace that sinks netlab's TCP stream;
	// the rate measured must be within [MinRate, MaxRate] (bits per second; 0: no bound).
	MinRate, MaxRate uint64

	// Resolved by Validate: the namespace From names (the host for HostName),
	// whose Resolve answers a target given by name.
	FromNamespace *Namespace
}

// KernelName is the one mapping from a namespace's name in the file to the name
// netlab gives it everywhere else (plans, state, the kernel): the name under
// /run/netns for a lab namespace (NetnsPrefix and its name), and HostName for
// the host, whose namespace has no name in the kernel.
func (l *Lab) KernelName(namespace string) string {
	if namespace == HostName {
		return HostName
	}
	return l.NetnsPrefix + namespace
}
