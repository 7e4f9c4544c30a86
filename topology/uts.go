package topology

import (
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The low-level keys a container needs besides its network: `hostname:` (a UTS
// namespace of its own), `hosts:` and `resolv:` (its /etc/hosts and
// /etc/resolv.conf, written under /etc/netns/NS/).

// namespaceUTS reads `hostname:`, `hosts:` and `resolv:` of a namespace.
func (d *decoder) namespaceUTS(ns *Namespace, f fields, label string) {
	if v := f.val("hostname"); v != nil {
		if s, ok := d.str(v, label+": hostname"); ok {
			if len(s) > 64 || !hostnameRE.MatchString(s) {
				d.errorf(v, "%s: invalid hostname %q: %s (at most 64 bytes, the kernel's limit)", label, s, hostnameWant)
			} else {
				ns.Hostname = s
			}
		}
	}
	if v := f.val("hosts"); v != nil {
		items, _ := d.list(v, label+": hosts")
		for _, item := range items {
			s, ok := d.str(item, label+": hosts")
			if !ok {
				continue
			}
			words := strings.Fields(s)
			if len(words) < 2 {
				d.errorf(item, "%s: hosts: want \"ADDRESS NAME...\", such as \"172.18.0.2 web\", got %q", label, s)
				continue
			}
			a, err := netip.ParseAddr(words[0])
			if err != nil || a.Zone() != "" {
				d.errorf(item, "%s: hosts: invalid address %q (want \"ADDRESS NAME...\")", label, words[0])
				continue
			}
			good := true
			for _, w := range words[1:] {
				if len(w) > 253 || !hostnameRE.MatchString(w) {
					d.errorf(item, "%s: hosts: invalid name %q: %s", label, w, hostnameWant)
					good = false
				}
			}
			if good {
				ns.HostsLines = append(ns.HostsLines, HostsLine{Pos: pos(item), Addr: a, Names: words[1:]})
			}
		}
	}
	if v := f.val("resolv"); v != nil {
		ns.Resolv = d.resolv(v, label+": resolv")
	}
}

// resolv reads `resolv: host` or `resolv: {nameservers, search, options}`.
func (d *decoder) resolv(n *yaml.Node, label string) *Resolv {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		if n.Value != "host" {
			d.errorf(n, "%s: want host (the host's resolvers) or a mapping {nameservers, search, options}, got %s", label, describe(n))
			return nil
		}
		return &Resolv{Pos: pos(n), Host: true}
	}
	f, ok := d.fields(n, label, "nameservers", "search", "options")
	if !ok {
		return nil
	}
	r := &Resolv{Pos: pos(n)}
	if v := f.val("nameservers"); v != nil {
		items, _ := d.list(v, label+": nameservers")
		for _, item := range items {
			if a, ok := value(d, item, label+": nameservers", parseAddr); ok {
				r.Nameservers = append(r.Nameservers, a)
			}
		}
	}
	if len(r.Nameservers) == 0 {
		d.errorf(n, "%s: want at least one of nameservers: (or resolv: host)", label)
		return nil
	}
	for _, k := range []string{"search", "options"} {
		v := f.val(k)
		if v == nil {
			continue
		}
		items, _ := d.list(v, label+": "+k)
		for _, item := range items {
			s, ok := d.str(item, label+": "+k)
			if !ok {
				continue
			}
			if s == "" || strings.ContainsAny(s, " \t\x00\n\r#;") {
				d.errorf(item, "%s: %s: want one word, got %q", label, k, s)
				continue
			}
			if k == "search" {
				r.Search = append(r.Search, s)
			} else {
				r.Options = append(r.Options, s)
			}
		}
	}
	return r
}
