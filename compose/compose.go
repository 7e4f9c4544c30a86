// Package compose turns a Docker Compose file into a netlab lab at Docker's
// level (docker:, networks:, containers:), reading it with the compose
// specification's own library, github.com/compose-spec/compose-go/v2. What a
// lab cannot hold (images, volumes, environment, ...) is listed, not guessed.
package compose

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"netlab/topology"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// Result is an imported lab.
type Result struct {
	Lab     []byte   // the lab file, YAML
	Ignored []string // "services.web.image", ... : what the lab leaves out, sorted
	Notes   []string // what the import decided on its own
}

// serviceKeys are the keys of a service the import turns into the lab.
var serviceKeys = []string{"networks", "network_mode", "ports", "hostname", "container_name", "sysctls", "mac_address", "expose"}

// networkKeys are the keys of a network it reads.
var networkKeys = []string{"ipam", "internal", "driver", "name"}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// Import reads the compose file at path (with its .env and the environment,
// as `docker compose` does) and writes the lab.
func Import(ctx context.Context, path string) (*Result, error) {
	if err := checkFiles(path); err != nil {
		return nil, err
	}
	model, project, err := load(ctx, path)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	res.Ignored = ignoredKeys(model)

	lab := labName(project.Name)
	root := mapping()
	add(root, "name", str(lab))
	add(root, "description", str("Imported from "+filepath.Base(path)+" by netlab import compose"))
	add(root, "docker", flowMap("version", str("26.1")))
	if nets := res.networks(project); nets != nil {
		add(root, "networks", nets)
	}
	// Containers: one per service, in name order (compose starts them in parallel).
	names := sortedKeys(project.Services)
	containers, checks := res.containers(project.Services, names)
	add(root, "containers", containers)
	checks = append(checks, reachChecks(project.Services, names)...)
	if len(checks) > 0 {
		add(root, "checks", seqOf(checks...))
	}
	if res.Lab, err = encode(path, root); err != nil {
		return nil, err
	}
	return res, nil
}

// load reads the compose file twice, as the raw model (to name what the lab
// leaves out) and as the project (with compose's defaults and interpolation).
// The services' env_file and label_file are not read: a lab holds neither
// environment nor labels, and compose-go would print the values of an
// env_file it cannot interpolate (env_file: /etc/shadow, hashes included).
func load(ctx context.Context, path string) (map[string]any, *types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)), cli.WithOsEnv, cli.WithEnvFiles(), cli.WithDotEnv,
		cli.WithoutEnvironmentResolution, cli.WithoutLabelsResolution)
	if err != nil {
		return nil, nil, err
	}
	model, err := opts.LoadModel(ctx)
	if err != nil {
		return nil, nil, err
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, nil, err
	}
	return model, project, nil
}

// note records what the import decided on its own.
func (res *Result) note(format string, args ...any) {
	res.Notes = append(res.Notes, fmt.Sprintf(format, args...))
}

// networks are those services use, by name; compose's "default" is a
// user-defined network like the others. Nil when there are none.
func (res *Result) networks(project *types.Project) *yaml.Node {
	used := map[string]bool{}
	for _, s := range project.Services {
		for n := range s.Networks {
			used[n] = true
		}
	}
	var netNames []string
	for n := range project.Networks {
		if used[n] {
			netNames = append(netNames, n)
		}
	}
	slices.Sort(netNames)
	if len(netNames) == 0 {
		return nil
	}
	nets := mapping()
	for _, name := range netNames {
		n := project.Networks[name]
		body := flowMapping()
		if n.Driver != "" && n.Driver != "bridge" {
			res.note("network %s: driver %s is not Docker's bridge driver; imported as a bridge network", name, n.Driver)
		}
		if len(n.Ipam.Config) > 0 && n.Ipam.Config[0] != nil {
			if s := n.Ipam.Config[0].Subnet; s != "" {
				if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
					add(body, "subnet", str(p.Masked().String()))
				} else {
					res.note("network %s: subnet %s left out (netlab's Docker level is IPv4)", name, s)
				}
			}
			if g := n.Ipam.Config[0].Gateway; g != "" {
				add(body, "gateway", str(g))
			}
		}
		if n.Internal {
			add(body, "internal", boolean(true))
		}
		add(nets, netName(name), body)
	}
	return nets
}

// containers are the services named, in that order, and the checks of their
// published ports.
func (res *Result) containers(services types.Services, names []string) (*yaml.Node, []*yaml.Node) {
	containers := mapping()
	var checks []*yaml.Node
	for _, name := range names {
		s := services[name]
		c := mapping()
		res.containerNetworks(c, name, s)
		if s.Hostname != "" {
			add(c, "hostname", str(s.Hostname))
		}
		checks = append(checks, res.ports(c, name, s)...)
		res.sysctls(c, name, s)
		if len(c.Content) == 0 {
			c = flowMapping()
		}
		add(containers, name, c)
	}
	return containers, checks
}

// containerNetworks adds the service's network (host, none) or networks, with
// their addresses and aliases, to its container c.
func (res *Result) containerNetworks(c *yaml.Node, name string, s types.ServiceConfig) {
	switch {
	case s.NetworkMode == "host" || s.NetworkMode == "none":
		add(c, "network", str(s.NetworkMode))
	case s.NetworkMode != "":
		res.note("service %s: network_mode %s left out (a container sharing another's namespace is not built)", name, s.NetworkMode)
	default:
		nets := mapping()
		for _, n := range s.NetworksByPriority() {
			cfg := s.Networks[n]
			body := flowMapping()
			var aliases []string
			if s.ContainerName != "" {
				aliases = append(aliases, s.ContainerName)
			}
			if cfg != nil {
				aliases = append(aliases, cfg.Aliases...)
				if cfg.Ipv4Address != "" {
					add(body, "ip", str(cfg.Ipv4Address))
				}
				if cfg.MacAddress != "" {
					add(body, "mac", str(cfg.MacAddress))
				}
			}
			if len(aliases) > 0 {
				add(body, "aliases", flowSeq(aliases...))
			}
			add(nets, netName(n), body)
		}
		if len(nets.Content) > 0 {
			add(c, "networks", nets)
		}
	}
}

// ports adds the service's published ports, and netlab's server on each TCP
// one, to its container c; it returns the checks of those the host reaches.
func (res *Result) ports(c *yaml.Node, name string, s types.ServiceConfig) []*yaml.Node {
	var publish []string
	var serve, checks []*yaml.Node
	served := map[uint32]bool{}
	for _, p := range s.Ports {
		if p.Published == "" {
			res.note("service %s: port %d without a host port left out (Docker picks one at random)", name, p.Target)
			continue
		}
		text := p.Published + ":" + strconv.Itoa(int(p.Target))
		if p.HostIP != "" {
			host := p.HostIP
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			text = host + ":" + text
		}
		proto := cmpOr(p.Protocol, "tcp")
		if proto != "tcp" {
			text += "/" + proto
		}
		publish = append(publish, text)
		if proto == "tcp" && !served[p.Target] {
			served[p.Target] = true
			serve = append(serve, flowMap("http", num(int(p.Target)), "body", str("Hello from "+name)))
			if _, err := strconv.Atoi(p.Published); err == nil && p.HostIP == "" {
				checks = append(checks, flowMap("from", str("host"), "http", str("http://127.0.0.1:"+p.Published+"/"),
					"expect", flowMap("body", str("Hello from "+name))))
			}
		}
	}
	if len(publish) > 0 {
		add(c, "publish", flowSeq(publish...))
	}
	if len(serve) > 0 {
		// The image's own server is not run: netlab's answers on its port.
		add(c, "serve", seqOf(serve...))
	}
	return checks
}

// sysctls adds the service's network sysctls to its container c.
func (res *Result) sysctls(c *yaml.Node, name string, s types.ServiceConfig) {
	if len(s.Sysctls) == 0 {
		return
	}
	sc := mapping()
	for _, k := range sortedKeys(s.Sysctls) {
		if strings.HasPrefix(k, "net.") {
			add(sc, k, str(s.Sysctls[k]))
		} else {
			res.note("service %s: sysctl %s left out (not a network namespace's)", name, k)
		}
	}
	if len(sc.Content) > 0 {
		add(c, "sysctls", sc)
	}
}

// reachChecks: services that share a network reach each other; those that
// share none do not (Docker isolates networks).
func reachChecks(services types.Services, names []string) []*yaml.Node {
	var checks []*yaml.Node
	for i, a := range names {
		for _, b := range names[i+1:] {
			sa, sb := services[a], services[b]
			if sa.NetworkMode != "" || sb.NetworkMode != "" {
				continue
			}
			shared := false
			for n := range sa.Networks {
				if _, ok := sb.Networks[n]; ok {
					shared = true
				}
			}
			if shared {
				checks = append(checks, flowMap("from", str(a), "ping", str(b)))
			} else {
				checks = append(checks, flowMap("from", str(a), "ping", str(b), "expect", str("fail")))
			}
		}
	}
	return checks
}

// encode writes the lab file: a header comment, then root.
func encode(path string, root *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Imported from " + filepath.Base(path) + " by netlab import compose.\n")
	buf.WriteString("# Each service is a container; netlab's own server answers on its published ports\n# in place of the image's.\n")
	lab, err := topology.EncodeYAML(root)
	if err != nil {
		return nil, err
	}
	buf.Write(lab)
	return buf.Bytes(), nil
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// ignoredKeys lists the keys of the compose model the lab leaves out.
func ignoredKeys(model map[string]any) []string {
	var out []string
	for k, v := range model {
		switch k {
		case "name", "networks":
			if k == "networks" {
				nets, _ := v.(map[string]any)
				for n, body := range nets {
					m, _ := body.(map[string]any)
					for nk := range m {
						if !slices.Contains(networkKeys, nk) {
							out = append(out, "networks."+n+"."+nk)
						}
					}
				}
			}
		case "services":
			services, _ := v.(map[string]any)
			for name, body := range services {
				m, _ := body.(map[string]any)
				for sk, sv := range m {
					if slices.Contains(serviceKeys, sk) || sv == nil {
						continue
					}
					if sk == "command" || sk == "entrypoint" {
						if l, ok := sv.([]any); ok && len(l) == 0 {
							continue
						}
					}
					out = append(out, "services."+name+"."+sk)
				}
			}
		default:
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// labName makes a lab name (1 to 24 of a-z, 0-9, "-") from a project name.
func labName(s string) string {
	s = strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 24 {
		s = strings.TrimRight(s[:24], "-")
	}
	if s == "" {
		return "compose"
	}
	return s
}

// netName is a compose network's name in the lab ("bridge", "host" and "none"
// are Docker's own).
func netName(n string) string {
	if n == "bridge" || n == "host" || n == "none" {
		return n + "-net"
	}
	return n
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// --- YAML nodes -----------------------------------------------------------------

func mapping() *yaml.Node     { return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"} }
func flowMapping() *yaml.Node { n := mapping(); n.Style = yaml.FlowStyle; return n }
func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
func num(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}
func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}
func add(m *yaml.Node, k string, v *yaml.Node) { m.Content = append(m.Content, str(k), v) }
func flowMap(kv ...any) *yaml.Node {
	m := flowMapping()
	for i := 0; i+1 < len(kv); i += 2 {
		add(m, kv[i].(string), kv[i+1].(*yaml.Node))
	}
	return m
}
func flowSeq(items ...string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, s := range items {
		n.Content = append(n.Content, str(s))
	}
	return n
}
func seqOf(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: items}
}
