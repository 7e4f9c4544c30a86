package topology

// The Docker level: `docker:`, `networks:` and `containers:` describe a lab as
// `docker network create` and `docker run` would, and compile to the low-level
// sections (bridges, namespaces, links, the host's sysctls) before anything else
// reads the file. The compilation works on the YAML tree itself: every node it
// writes carries the line and column of the Docker-level entry it comes from, so
// a problem the low-level checks find in it is reported where the user wrote the
// container or network; and `netlab expand` prints the low-level tree as it is.
//
// What dockerd gives, by version, is in docs/topology.md ("Docker level") and
// shared/design/docker-facts.md. The compilation is pure: names, addresses and
// MACs Docker picks at random are derived from the lab's name instead, so that
// every `up` asks for the same kernel objects.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DockerVersions are the dockerd releases whose kernel details the Docker level
// reproduces.
var DockerVersions = []string{"20.10", "26.1", "28", "29"}

// DefaultDockerVersion is the release a lab gets when `docker: version:` is not given.
const DefaultDockerVersion = "26.1"

// dockerKeys are the top-level keys of the Docker level.
var dockerKeys = []string{"docker", "networks", "containers"}

// DefaultBridgeNetwork is Docker's default network, and DefaultBridge its bridge.
const (
	DefaultBridgeNetwork = "bridge"
	DefaultBridge        = "docker0"
	// EmbeddedDNS is the address of Docker's embedded DNS server in a container
	// on a user-defined network.
	EmbeddedDNS = "127.0.0.11"
)

type dockerConfig struct {
	version  string
	proxy    bool
	firewall string
	pos      Pos
}

type dockerNet struct {
	name     string
	key      *yaml.Node
	bridge   string
	subnet   netip.Prefix
	gateway  netip.Addr
	internal bool
	icc      *yaml.Node // as written, or nil
	masq     bool
	isolated bool
	mtu      *yaml.Node
	user     bool // a user-defined network (names and DNS), not the default bridge
	bad      bool // reported: neither it nor its containers are emitted
	taken    map[netip.Addr]bool
	next     netip.Addr
	members  []*dockerEndpoint
}

type dockerEndpoint struct {
	c       *dockerContainer
	net     *dockerNet
	ifname  string
	pos     Pos
	ip      netip.Addr
	ipNode  *yaml.Node
	mac     net.HardwareAddr
	aliases []string
}

type dockerContainer struct {
	name      string
	key       *yaml.Node
	f         fields
	mode      string // "" (networks), "host" or "none"
	endpoints []*dockerEndpoint
	hostname  string
	aliases   []string
	bad       bool // reported: not emitted, so that its mistakes are not reported again as others
}

// hexOf is n hex digits of a hash of the parts: the stable stand-in for what
// Docker draws at random (network and container ids, MACs).
func hexOf(n int, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])[:n]
}

// DockerHostname is the hostname of a container: 12 hex digits, as the prefix
// of a container id, stable per lab and container.
func DockerHostname(lab, container string) string { return hexOf(12, "container", lab, container) }

// DockerBridgeName is the bridge of a user-defined network: br- and 12 hex
// digits, stable per lab and network.
func DockerBridgeName(lab, network string) string { return "br-" + hexOf(12, "network", lab, network) }

// --- The compilation ------------------------------------------------------------

// dockerLevel compiles the Docker-level sections of root into low-level ones
// and returns the new root (root itself when it has none). Errors in the
// Docker-level sections are reported at their positions.
func (d *decoder) dockerLevel(root *yaml.Node) *yaml.Node {
	if root == nil || root.Kind != yaml.MappingNode {
		return root
	}
	var found bool
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: root.Line, Column: root.Column, Style: root.Style,
		HeadComment: root.HeadComment, FootComment: root.FootComment}
	dk := map[string]pair{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if slices.Contains(dockerKeys, k.Value) {
			if _, dup := dk[k.Value]; dup {
				d.errorf(k, "lab file: duplicate key %q (first at line %d)", k.Value, dk[k.Value].key.Line)
				continue
			}
			dk[k.Value] = pair{k, root.Content[i+1]}
			found = true
			continue
		}
		out.Content = append(out.Content, k, root.Content[i+1])
	}
	if !found {
		return root
	}
	lab := ""
	if n := getKey(root, "name"); n != nil && resolve(n).Kind == yaml.ScalarNode {
		lab = resolve(n).Value
	}
	first := Pos{1, 1}
	for _, k := range dockerKeys {
		if p, ok := dk[k]; ok {
			first = pos(p.key)
			break
		}
	}
	cfg := d.dockerConfig(dk["docker"], first)
	nets, byName := d.dockerNetworks(dk["networks"], lab, first)
	containers := d.dockerContainers(dk["containers"], byName)
	d.allocate(nets, containers, lab, cfg)
	d.emitDocker(out, lab, cfg, nets, containers, first)
	return canonicalOrder(out)
}

// canonicalOrder puts the top-level keys in the order of the low-level format.
func canonicalOrder(root *yaml.Node) *yaml.Node {
	rank := func(k string) int {
		if i := slices.Index(topKeys, k); i >= 0 {
			return i
		}
		return len(topKeys)
	}
	type kv struct{ k, v *yaml.Node }
	var pairs []kv
	for i := 0; i+1 < len(root.Content); i += 2 {
		pairs = append(pairs, kv{root.Content[i], root.Content[i+1]})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return rank(pairs[i].k.Value) < rank(pairs[j].k.Value) })
	root.Content = root.Content[:0]
	for _, p := range pairs {
		root.Content = append(root.Content, p.k, p.v)
	}
	return root
}

func (d *decoder) dockerConfig(p pair, first Pos) dockerConfig {
	cfg := dockerConfig{version: DefaultDockerVersion, proxy: true, firewall: "native", pos: first}
	if p.key == nil {
		return cfg
	}
	cfg.pos = pos(p.key)
	f, _ := d.fields(p.value, "docker", "version", "userland-proxy", "firewall")
	versionBad := false // reported: nothing else is checked against it
	if v := f.val("version"); v != nil {
		// `version: 26.1` is a number to YAML; the text written is what counts.
		if s, ok := d.str(v, "docker: version"); ok {
			if !slices.Contains(DockerVersions, s) {
				d.errorf(v, "docker: version: %q is not a release netlab knows (want %s)", s, strings.Join(DockerVersions, ", "))
				versionBad = true
			} else {
				cfg.version = s
			}
		}
	}
	if v := f.val("userland-proxy"); v != nil {
		cfg.proxy, _ = d.boolean(v, "docker: userland-proxy")
	}
	if v := f.val("firewall"); v != nil {
		if s, ok := d.oneOf(v, "docker: firewall", "native", "iptables", "nftables"); ok {
			cfg.firewall = s
			// Docker's nftables backend (--firewall-backend=nftables) is new in 29.
			if s == "nftables" && cfg.version != "29" && !versionBad {
				d.errorf(v, "docker: firewall: nftables is Docker 29's --firewall-backend=nftables: it needs docker: {version: \"29\"} (the version is %s); or use firewall: native, netlab's table with Docker's behaviour, or firewall: iptables, dockerd's iptables rules", cfg.version)
				cfg.firewall = "native"
			}
		}
	}
	return cfg
}

// Expand reads a lab file and returns the equivalent low-level lab: the
// Docker-level sections compiled to bridges, namespaces and links, as YAML that
// `netlab up` accepts. The file must be valid; its problems are returned as
// Errors, positioned in the file as written.
func Expand(data []byte, filename string) ([]byte, error) {
	d := &decoder{file: filename, notes: parseNotes{badAddrs: map[string]bool{}, badSections: map[string]bool{}}}
	if len(data) > maxFileSize {
		d.errorAt(Pos{1, 1}, "lab file is larger than 4 MiB; a lab is a few kilobytes")
		return nil, d.errs.sorted()
	}
	root := d.document(data)
	if root == nil {
		return nil, d.errs.sorted()
	}
	expanded := d.dockerLevel(root)
	lab := d.lab(expanded)
	errs := d.errs
	if lab != nil {
		errs = append(errs, validate(lab, d.notes)...)
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	out, err := EncodeYAML(expanded)
	if err != nil {
		return nil, fmt.Errorf("%s: write the expanded lab: %w", filename, err)
	}
	return out, nil
}
