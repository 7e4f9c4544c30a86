package topology

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// The scalar parsers of the file format. Each takes the text as written and returns
// the value, or an error whose message completes "SUBJECT: " (the caller names the
// subject, since only it knows which interface or namespace the value belongs to).

var (
	labNameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)
	namespaceRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)
	netnsPrefixRE = regexp.MustCompile(`^[a-z0-9_.-]{0,16}$`)
	sysctlKeyRE   = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)
)

const (
	labNameWant     = "want 1 to 24 lower-case letters, digits or \"-\", starting with a letter or digit"
	namespaceWant   = "want 1 to 32 letters, digits, \"_\", \".\" or \"-\", starting with a letter or digit"
	netnsPrefixWant = "want at most 16 lower-case letters, digits, \"-\", \"_\" or \".\""
)

// maxKernelName bounds NetnsPrefix+name: the name becomes a file under /run/netns and
// appears in every `ip netns` command, so it is kept well under NAME_MAX.
const maxKernelName = 48

// ifnameProblem says why name cannot be a Linux interface name, or returns "".
// The kernel's rules (dev_valid_name): 1 to 15 bytes, not "." or "..", no "/",
// ":" or whitespace. "lo" exists in every namespace already; "all" and "default"
// are the kernel's own entries of net/ipv4/conf, net/ipv6/conf and neigh (the
// settings of every interface and of new ones), so an interface of that name
// cannot get its own and the kernel refuses it after the namespace is made.
func ifnameProblem(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case len(name) > 15:
		return fmt.Sprintf("it is %d bytes; Linux allows at most 15", len(name))
	case name == "." || name == "..":
		return "it is reserved"
	case name == "lo":
		return "lo is the loopback interface every namespace already has"
	case name == "all":
		return "all is reserved: net.ipv4.conf.all holds the settings of every interface, so no interface can have that name"
	case name == "default":
		return "default is reserved: net.ipv4.conf.default holds the settings new interfaces start with, so no interface can have that name"
	case strings.Contains(name, "/"):
		return `it contains "/"`
	case strings.Contains(name, ":"):
		return `it contains ":"`
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "it contains whitespace or a control character"
	}
	return ""
}

// checkIfname returns an error when name cannot be an interface name.
func checkIfname(name string) error {
	if p := ifnameProblem(name); p != "" {
		return fmt.Errorf("invalid interface name %q: %s", name, p)
	}
	return nil
}

// parseAddress reads an interface address, ADDRESS/PREFIXLEN, keeping the host bits.
func parseAddress(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.Prefix{}, fmt.Errorf("address %q has no prefix length (want ADDRESS/PREFIXLEN, e.g. %s/%d)", s, a, a.BitLen()/2)
		}
		return netip.Prefix{}, fmt.Errorf("invalid address %q (want ADDRESS/PREFIXLEN, e.g. 172.17.0.2/16)", s)
	}
	a := p.Addr()
	switch {
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("address %q is IPv4-mapped IPv6; write the IPv4 address", s)
	case a.IsUnspecified():
		return netip.Prefix{}, fmt.Errorf("address %s is the unspecified address", p)
	case a.IsMulticast():
		return netip.Prefix{}, fmt.Errorf("address %s is a multicast address", p)
	case a.IsLoopback():
		return netip.Prefix{}, fmt.Errorf("address %s is a loopback address; lo already has it", p)
	case a.Is6() && a.IsLinkLocalUnicast():
		// netlab leaves fe80::/10 to the kernel (it is not part of a lab's state).
		return netip.Prefix{}, fmt.Errorf("address %s is an IPv6 link-local address; the kernel gives every interface one of its own", p)
	}
	// /31 and /32 have no network or broadcast address (RFC 3021).
	if a.Is4() && p.Bits() < 31 {
		subnet := p.Masked()
		if a == subnet.Addr() {
			return netip.Prefix{}, fmt.Errorf("address %s is the network address of %s; use a host address such as %s/%d", p, subnet, a.Next(), p.Bits())
		}
		if a == broadcast(subnet) {
			return netip.Prefix{}, fmt.Errorf("address %s is the broadcast address of %s", p, subnet)
		}
	}
	return p, nil
}

// broadcast is the last address of an IPv4 subnet.
func broadcast(subnet netip.Prefix) netip.Addr {
	b := subnet.Addr().As4()
	for i := subnet.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

// parseMatchPrefix reads the subnet of a rule match (source, dest): a CIDR without
// host bits, or a bare address meaning /32 or /128.
func parseMatchPrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid subnet %q (want a CIDR such as 10.0.0.0/8, or an address)", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("subnet %s has host bits set (did you mean %s?)", p, p.Masked())
	}
	return p, nil
}

// parseAddr reads a plain IP address (a gateway, a NAT target, a check's target).
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("invalid address %q (want an IPv4 or IPv6 address)", s)
	}
	return a, nil
}

// parseMAC reads a unicast Ethernet address.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("invalid MAC address %q (want six hex bytes such as 02:42:ac:11:00:02)", s)
	}
	if mac[0]&1 == 1 {
		return nil, fmt.Errorf("MAC address %s is multicast (the low bit of its first byte is set); use a unicast one such as 02:42:ac:11:00:02", mac)
	}
	if string(mac) == "\x00\x00\x00\x00\x00\x00" {
		return nil, fmt.Errorf("MAC address %s is all zeros", mac)
	}
	return mac, nil
}

// parsePortRange reads "80" or "8000-8010".
func parsePortRange(s string) (PortRange, error) {
	first, last, isRange := strings.Cut(s, "-")
	a, errA := parsePort(first)
	b, errB := a, errA
	if isRange {
		b, errB = parsePort(last)
	}
	if errA != nil || errB != nil {
		return PortRange{}, fmt.Errorf("invalid port %q (want a port 1-65535 or a range such as 8000-8010)", s)
	}
	if a > b {
		return PortRange{}, fmt.Errorf("invalid port range %q: %d is greater than %d", s, a, b)
	}
	return PortRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("invalid port")
	}
	return uint16(n), nil
}

// parseIfaceMatch reads the `in:` or `out:` of a rule: "eth0" or "!eth0".
func parseIfaceMatch(s string) (Iface, error) {
	name, not := strings.CutPrefix(s, "!")
	if err := checkIfname(name); err != nil {
		return Iface{}, err
	}
	return Iface{Name: name, Not: not}, nil
}

// routeWords are the iproute2 words a route string may use after its destination.
var routeWords = []string{"via", "dev", "metric"}

// parseRoute reads the iproute2 form `DEST [via GW] [dev IF] [metric N]`; the words
// after DEST come in any order, each at most once.
func parseRoute(s string) (*Route, error) {
	words := strings.Fields(s)
	if len(words) == 0 {
		return nil, errors.New("empty route (want DEST [via GW] [dev IF] [metric N])")
	}
	var via, dev, metric string
	seen := map[string]bool{}
	for i := 1; i < len(words); i += 2 {
		w := words[i]
		if !slices.Contains(routeWords, w) {
			return nil, fmt.Errorf("unknown word %q (want DEST [via GW] [dev IF] [metric N])", w)
		}
		if seen[w] {
			return nil, fmt.Errorf("%q given twice", w)
		}
		seen[w] = true
		if i+1 >= len(words) {
			return nil, fmt.Errorf("%q needs a value", w)
		}
		switch w {
		case "via":
			via = words[i+1]
		case "dev":
			dev = words[i+1]
		case "metric":
			metric = words[i+1]
		}
	}
	r := &Route{Dev: dev}
	if via != "" {
		a, err := parseAddr(via)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		r.Via = a
	}
	if metric != "" {
		n, err := strconv.ParseUint(metric, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid metric %q (want 0 to 4294967295)", metric)
		}
		r.Metric = int(n)
	}
	to, err := parseRouteDest(words[0], r.Via)
	if err != nil {
		return nil, err
	}
	r.To = to
	return r, checkRoute(r)
}

// parseRouteDest reads a route destination: "default", a CIDR or a bare address.
// The family of "default" is the gateway's.
func parseRouteDest(s string, via netip.Addr) (netip.Prefix, error) {
	if s == "default" {
		switch {
		case !via.IsValid():
			return netip.Prefix{}, errors.New("default route needs via (the gateway says whether it is IPv4 or IPv6); for a device route write 0.0.0.0/0 or ::/0")
		case via.Is4():
			return netip.MustParsePrefix("0.0.0.0/0"), nil
		default:
			return netip.MustParsePrefix("::/0"), nil
		}
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid destination %q (want default, a CIDR such as 10.9.0.0/16, or an address)", s)
	}
	return p.Masked(), nil
}

// checkRoute holds the rules shared by both forms of a route.
func checkRoute(r *Route) error {
	if !r.Via.IsValid() && r.Dev == "" {
		return errors.New("a route needs via or dev")
	}
	if r.Via.IsValid() {
		if r.Via.Is4() != r.To.Addr().Is4() {
			return fmt.Errorf("gateway %s is %s but destination %s is %s", r.Via, family(r.Via), r.To, family(r.To.Addr()))
		}
		if r.Via.IsUnspecified() || r.Via.IsMulticast() || r.Via.IsLoopback() {
			return fmt.Errorf("gateway %s cannot be a gateway", r.Via)
		}
	}
	if r.Dev != "" && r.Dev != "lo" { // lo: a lab namespace's own (see loopbacks)
		if err := checkIfname(r.Dev); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// routeText is the canonical iproute2 form of a route, used to name it in messages.
func routeText(r *Route) string {
	var b strings.Builder
	if r.To.Bits() == 0 {
		b.WriteString("default")
	} else if r.To.IsSingleIP() {
		b.WriteString(r.To.Addr().String())
	} else {
		b.WriteString(r.To.String())
	}
	if r.Via.IsValid() {
		b.WriteString(" via " + r.Via.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	return b.String()
}

const publishWant = "want [HOST_IP:]HOST_PORT:PORT[/tcp|udp], e.g. 8000:80 or 127.0.0.1:8000:80/udp"

// parsePublish reads a docker run -p string: [HOST_IP:]HOST_PORT:PORT[/tcp|udp].
// An IPv6 HOST_IP is written in brackets: [::1]:8000:80.
func parsePublish(s string) (*Publish, error) {
	bad := errors.New(publishWant)
	p := &Publish{Text: s, Proto: "tcp"}
	rest := s
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		p.Proto = rest[i+1:]
		rest = rest[:i]
		if p.Proto != "tcp" && p.Proto != "udp" {
			return nil, fmt.Errorf("unknown protocol %q (want tcp or udp)", p.Proto)
		}
	}
	var ip, hostPort, port string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return nil, bad
		}
		ip, rest = rest[1:end], rest[end+2:]
		var ok bool
		if hostPort, port, ok = strings.Cut(rest, ":"); !ok {
			return nil, bad
		}
	} else {
		parts := strings.Split(rest, ":")
		switch len(parts) {
		case 2:
			hostPort, port = parts[0], parts[1]
		case 3:
			ip, hostPort, port = parts[0], parts[1], parts[2]
		default:
			return nil, bad
		}
	}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("invalid host address %q", ip)
		}
		p.HostIP = a
	}
	var err1, err2 error
	p.HostPort, err1 = parsePort(hostPort)
	p.Port, err2 = parsePort(port)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("ports must be numbers from 1 to 65535 (%s)", publishWant)
	}
	return p, nil
}

// parseDNATTarget reads a dnat `to:`: "10.0.0.5", "10.0.0.5:80", "10.0.0.5:80-90",
// "2001:db8::5" or "[2001:db8::5]:80".
func parseDNATTarget(s string) (netip.Addr, PortRange, error) {
	bad := fmt.Errorf("invalid target %q (want ADDRESS or ADDRESS:PORT, e.g. 10.0.0.5:80 or [2001:db8::5]:80)", s)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a, PortRange{}, nil
	}
	var addr, ports string
	hasPorts := true
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return netip.Addr{}, PortRange{}, bad
		}
		addr, ports = s[1:end], s[end+1:]
		if ports == "" {
			hasPorts = false
		} else if ports, hasPorts = strings.CutPrefix(ports, ":"); !hasPorts {
			return netip.Addr{}, PortRange{}, bad
		}
	} else if addr, ports, hasPorts = strings.Cut(s, ":"); !hasPorts {
		return netip.Addr{}, PortRange{}, bad
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, PortRange{}, bad
	}
	if !hasPorts {
		return a, PortRange{}, nil
	}
	pr, err := parsePortRange(ports)
	if err != nil {
		return netip.Addr{}, PortRange{}, fmt.Errorf("target %q: %w", s, err)
	}
	return a, pr, nil
}

// parseEnd checks the shape of a link end: NAMESPACE:IFNAME, host:IFNAME, BRIDGE or
// BRIDGE:IFNAME. Which of these it is needs the whole lab, so Validate decides.
func parseEnd(s string) error {
	name, ifname, hasIf := strings.Cut(s, ":")
	switch {
	case name == "":
		return fmt.Errorf("end %q: want NAMESPACE:IFNAME, BRIDGE or BRIDGE:IFNAME", s)
	case strings.Contains(ifname, ":"):
		return fmt.Errorf("end %q has more than one \":\"; want NAMESPACE:IFNAME, BRIDGE or BRIDGE:IFNAME", s)
	case hasIf:
		if err := checkIfname(ifname); err != nil {
			return fmt.Errorf("end %q: %w", s, err)
		}
	}
	return nil
}

// checkPing, checkTCP and checkHTTP read the target of a check.
// A check's target host is an address or the name of a lab namespace, resolved
// as the `from` namespace would (through its generated hosts file).

func checkPing(s string) error {
	if _, err := parseAddr(s); err != nil && !namespaceRE.MatchString(s) {
		return fmt.Errorf("invalid target %q (want an address, or the name of a namespace)", s)
	}
	return nil
}

func checkTCP(s string) error {
	host, port, err := net.SplitHostPort(s)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 || checkPing(host) != nil {
		return fmt.Errorf("invalid target %q (want ADDRESS:PORT or NAME:PORT, e.g. 172.17.0.2:80, [2001:db8::2]:80 or web:80)", s)
	}
	return nil
}

func checkHTTP(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Host == "" || !strings.HasPrefix(s, "http://") {
		return fmt.Errorf("invalid URL %q (want http://ADDRESS-OR-NAME[:PORT]/PATH)", s)
	}
	return nil
}

// sysctlNumberRE matches a field of a sysctl value that is a number in any form
// the kernel reads (proc_dointvec parses with base 0): decimal, 0x hex, 0 octal.
var sysctlNumberRE = regexp.MustCompile(`^[+-]?(0[xX][0-9a-fA-F]*|[0-9]+)$`)

// canonicalSysctlValue returns a sysctl value as the kernel prints it back, so
// that the value of the file and the value read compare equal: fields separated
// by single spaces, integers in plain decimal ("+2" is 2, "-0" is 0). An integer
// the kernel would read other than as it looks is refused with the decimal to
// write instead: hex ("0x1") and a leading zero ("010", which the kernel reads
// as octal 8). Other fields (a congestion control name, "8080,9148-9150") are
// kept as written.
func canonicalSysctlValue(s string) (string, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return "", errors.New("the value is empty")
	}
	for i, f := range fields {
		if !sysctlNumberRE.MatchString(f) {
			continue
		}
		sign, digits := "", strings.TrimLeft(f, "+-")
		if strings.HasPrefix(f, "-") {
			sign = "-"
		}
		if strings.HasPrefix(digits, "0x") || strings.HasPrefix(digits, "0X") {
			n, err := strconv.ParseUint(digits[2:], 16, 64)
			if err != nil {
				return "", fmt.Errorf("%q is not a number the kernel reads", f)
			}
			return "", fmt.Errorf("%q is hexadecimal; write it in decimal: %s%d", f, sign, n)
		}
		if len(digits) > 1 && digits[0] == '0' && strings.Trim(digits, "0") != "" {
			n, err := strconv.ParseUint(digits, 8, 64)
			if err != nil {
				return "", fmt.Errorf("%q has a leading zero, which the kernel reads as octal, and is not octal; write it in decimal without the zero", f)
			}
			return "", fmt.Errorf("%q has a leading zero, which the kernel reads as octal (%s%d); write it in decimal without the zero", f, sign, n)
		}
		digits = strings.TrimLeft(digits, "0")
		if digits == "" {
			digits, sign = "0", ""
		}
		fields[i] = sign + digits
	}
	return strings.Join(fields, " "), nil
}

// parseReadyURL reads the URL of a `ready: {http: URL}`: http:// and an IP address
// or localhost, since it is fetched from inside the namespace by netlab, which
// resolves no names there.
func parseReadyURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || !strings.HasPrefix(s, "http://") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("invalid URL %q (want http://ADDRESS[:PORT]/PATH, e.g. http://127.0.0.1:8000/)", s)
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
		return "", fmt.Errorf("URL %q: the host must be an IP address or localhost (got %q)", s, host)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("URL %q: port %s is out of range (want 1 to 65535)", s, p)
		}
	}
	return s, nil
}
