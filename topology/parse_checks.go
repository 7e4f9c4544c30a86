package topology

// The `checks:` section, run by `netlab test`.

import "go.yaml.in/yaml/v3"

var checkKinds = []string{"ping", "tcp", "http", "traceroute"}

func (d *decoder) checks(n *yaml.Node) []*Check {
	items, _ := d.list(n, "checks")
	var out []*Check
	for _, item := range items {
		if c, ok := d.extraCheck(item); ok { // mesh and throughput (checks_extra.go)
			if c != nil {
				out = append(out, c)
			}
			continue
		}
		if item.Kind != yaml.MappingNode {
			d.errorf(item, "check: want a mapping such as {from: web, ping: 172.17.0.1}, got %s", describe(item))
			continue
		}
		f, _ := d.fields(item, "check", "from", "ping", "tcp", "http", "traceroute", "expect")
		c := &Check{Pos: pos(item)}
		good := true
		if v := f.val("from"); v == nil {
			d.errorf(item, "check: missing from: (the namespace to run it in)")
			good = false
		} else if c.From, good = d.str(v, "check: from"); good && c.From != HostName && !namespaceRE.MatchString(c.From) {
			d.errorf(v, "check: from: invalid namespace name %q", c.From)
			good = false
		}
		for _, kind := range checkKinds {
			v := f.val(kind)
			if v == nil {
				continue
			}
			if c.Kind != "" {
				d.errorf(f[kind].key, "check: both %s and %s; want exactly one of ping, tcp, http or traceroute", c.Kind, kind)
				good = false
				continue
			}
			c.Kind = kind
			s, ok := d.str(v, "check: "+kind)
			if ok {
				err := map[string]func(string) error{"ping": checkPing, "tcp": checkTCP, "http": checkHTTP, "traceroute": checkPing}[kind](s)
				if err != nil {
					d.errorf(v, "check: %s: %v", kind, err)
					ok = false
				}
			}
			c.Target, good = s, good && ok
		}
		if c.Kind == "" {
			d.errorf(item, "check: want one of ping, tcp, http or traceroute")
			good = false
		}
		if v := f.val("expect"); v != nil && !d.expect(c, v) {
			good = false
		}
		if good {
			out = append(out, c)
		}
	}
	return out
}

// expect reads `expect: fail` or `expect: {status, body, source}`.
func (d *decoder) expect(c *Check, n *yaml.Node) bool {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		if n.Value != "fail" {
			d.errorf(n, "check: expect: want fail or a mapping {status, body, source, hops}, got %s", describe(n))
			return false
		}
		c.ExpectFail = true
		return true
	}
	f, ok := d.fields(n, "check: expect", "status", "body", "source", "hops")
	if v := f.val("status"); v != nil {
		s, good := d.integer(v, "check: expect: status", 100, 599)
		c.ExpectStatus, ok = int(s), ok && good
		if good && c.Kind != "http" {
			d.errorf(f["status"].key, "check: expect: status is for http checks")
			ok = false
		}
	}
	if v := f.val("body"); v != nil {
		s, good := d.str(v, "check: expect: body")
		c.ExpectBody, ok = s, ok && good
		if good && c.Kind != "http" {
			d.errorf(f["body"].key, "check: expect: body is for http checks")
			ok = false
		}
	}
	if v := f.val("source"); v != nil {
		a, good := value(d, v, "check: expect: source", parseAddr)
		c.ExpectSource, ok = a, ok && good
	}
	if v := f.val("hops"); v != nil {
		if c.Kind != "traceroute" {
			d.errorf(f["hops"].key, "check: expect: hops is for traceroute checks")
			return false
		}
		items, good := d.list(v, "check: expect: hops")
		ok = ok && good
		for _, item := range items {
			a, good := value(d, item, "check: expect: hops", parseAddr)
			c.ExpectHops, ok = append(c.ExpectHops, a), ok && good
		}
	}
	return ok
}
