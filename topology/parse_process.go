package topology

// The processes of a namespace: `run:` (with `ready:`), `exec:` and `serve:`.

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// processes reads a namespace's `run:`, `exec:` and `serve:` lists.
func (d *decoder) processes(ns *Namespace, f fields, label string) {
	if v := f.val("run"); v != nil {
		items, _ := d.list(v, label+": run")
		for _, item := range items {
			c := d.runEntry(item, label)
			switch {
			case c == nil:
			case slices.ContainsFunc(ns.Run, func(o *Command) bool { return o.Line == c.Line }):
				d.errorf(item, "%s: run: %q is listed twice", label, c.Line)
			default:
				ns.Run = append(ns.Run, c)
			}
		}
	}
	if v := f.val("exec"); v != nil {
		items, _ := d.list(v, label+": exec")
		for _, item := range items {
			// The same command may be listed twice: each entry runs, in order.
			if s, ok := d.commandLine(item, label+": exec"); ok {
				ns.Exec = append(ns.Exec, &Exec{Pos: pos(item), Line: s})
			}
		}
	}
	if v := f.val("serve"); v != nil {
		items, _ := d.list(v, label+": serve")
		for _, item := range items {
			if svc := d.service(item, label); svc != nil {
				if slices.ContainsFunc(ns.Serve, func(o *Service) bool { return o.Port == svc.Port }) {
					d.errorf(item, "%s: serve: port %d is served twice", label, svc.Port)
					continue
				}
				ns.Serve = append(ns.Serve, svc)
			}
		}
	}
	d.sharedPorts(ns, label)
}

// sharedPorts refuses a run: entry ready on a TCP port that a serve: entry,
// or another run: entry, of the same namespace listens on: both would start,
// and the one socket would make both look ready.
func (d *decoder) sharedPorts(ns *Namespace, label string) {
	taken := map[uint16]string{}
	for _, svc := range ns.Serve {
		// The DNS server answers on TCP too, at the port of 127.0.0.11 that
		// port 53 is translated to.
		taken[svc.Port] = "serve: " + svc.Kind + " " + strconv.Itoa(int(svc.Port))
	}
	for _, c := range ns.Run {
		if c.Ready == nil || c.Ready.Kind != "tcp" {
			continue
		}
		if other, ok := taken[c.Ready.Port]; ok {
			d.errorAt(c.Ready.Pos, "%s: run: %q is ready on tcp port %d, which %s listens on too: one of them would fail to listen, and its socket make both look ready", label, c.Line, c.Ready.Port, other)
			continue
		}
		taken[c.Ready.Port] = strconv.Quote(c.Line)
	}
}

// commandLine reads a shell command written on one non-empty line.
func (d *decoder) commandLine(n *yaml.Node, label string) (string, bool) {
	s, ok := d.str(n, label)
	switch {
	case !ok:
		return "", false
	case strings.TrimSpace(s) == "":
		d.errorf(n, "%s: empty command", label)
		return "", false
	case strings.ContainsAny(s, "\x00\n\r"):
		d.errorf(n, "%s: a command is one line; write each command as its own item", label)
		return "", false
	}
	return s, true
}

// runEntry reads one `run:` entry: a command line, or {cmd, ready, timeout}.
func (d *decoder) runEntry(n *yaml.Node, nsl string) *Command {
	label := nsl + ": run"
	if n.Kind != yaml.MappingNode {
		s, ok := d.commandLine(n, label)
		if !ok {
			return nil
		}
		return &Command{Pos: pos(n), Line: s}
	}
	f, good := d.fields(n, label, "cmd", "ready", "timeout")
	c := &Command{Pos: pos(n)}
	if v := f.val("cmd"); v == nil {
		d.errorf(n, "%s: missing cmd: (the command to run)", label)
		good = false
	} else if s, ok := d.commandLine(v, label+": cmd"); ok {
		c.Line = s
	} else {
		good = false
	}
	if v := f.val("ready"); v != nil {
		c.Ready = d.ready(v, label+": ready")
		good = good && c.Ready != nil
	}
	if v := f.val("timeout"); v != nil {
		t, ok := d.duration(v, label+": timeout")
		c.Timeout, good = t, good && ok
		if ok && f.val("ready") == nil {
			d.errorf(f["timeout"].key, "%s: timeout is how long up waits for ready:, which is not given", label)
			good = false
		}
	}
	if !good {
		return nil
	}
	return c
}

var readyKinds = []string{"tcp", "http", "file"}

// ready reads {tcp: PORT}, {http: URL} or {file: PATH}.
func (d *decoder) ready(n *yaml.Node, label string) *Ready {
	ps, ok := d.mapping(n, label)
	if !ok {
		return nil
	}
	if len(ps) > 1 {
		d.errorf(n, "%s: give one of tcp, http or file, not several", label)
		return nil
	}
	if len(ps) != 1 || !slices.Contains(readyKinds, ps[0].key.Value) {
		d.errorf(n, "%s: want one of {tcp: PORT}, {http: URL} or {file: PATH}", label)
		return nil
	}
	r := &Ready{Pos: pos(n), Kind: ps[0].key.Value}
	v, label := ps[0].value, label+": "+r.Kind
	switch r.Kind {
	case "tcp":
		port, ok := d.integer(v, label, 1, 65535)
		if !ok {
			return nil
		}
		r.Port = uint16(port)
	case "http":
		s, ok := value(d, v, label, parseReadyURL)
		if !ok {
			return nil
		}
		r.URL = s
	case "file":
		s, ok := d.str(v, label)
		if !ok {
			return nil
		}
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "\x00\n") {
			d.errorf(v, "%s: want an absolute path such as /run/web.ready, got %q", label, s)
			return nil
		}
		r.Path = s
	}
	return r
}

// duration reads a Go duration such as 20s, 1m30s or 500ms, positive and at most
// MaxReadyTimeout.
func (d *decoder) duration(n *yaml.Node, label string) (time.Duration, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) || n.ShortTag() != "!!str" {
		d.errorf(n, "%s: want a duration such as 20s, 1m30s or 500ms, got %s", label, describe(n))
		return 0, false
	}
	t, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		d.errorf(n, "%s: invalid duration %q (want a duration such as 20s, 1m30s or 500ms)", label, n.Value)
		return 0, false
	case t <= 0 || t > MaxReadyTimeout:
		d.errorf(n, "%s: %s is out of range (want more than 0 and at most %s)", label, n.Value, MaxReadyTimeout)
		return 0, false
	}
	return t, true
}

// service reads one `serve:` entry: {http: PORT, body: TEXT} or {tcp-echo: PORT}.
func (d *decoder) service(n *yaml.Node, nsl string) *Service {
	label := nsl + ": serve"
	f, ok := d.fields(n, label, "http", "tcp-echo", "body", "dns")
	if !ok {
		return nil
	}
	svc := &Service{Pos: pos(n)}
	if v := f.val("dns"); v != nil {
		return d.dnsEntry(svc, f, v, nsl)
	}
	for _, kind := range []string{"http", "tcp-echo"} {
		v := f.val(kind)
		if v == nil {
			continue
		}
		if svc.Kind != "" {
			d.errorf(v, "%s: give one of http or tcp-echo, not both", label)
			return nil
		}
		port, ok := d.integer(v, label+": "+kind, 1, 65535)
		if !ok {
			return nil
		}
		svc.Kind, svc.Port = kind, uint16(port)
	}
	if svc.Kind == "" {
		d.errorf(n, "%s: want {http: PORT} or {tcp-echo: PORT}", label)
		return nil
	}
	if v := f.val("body"); v != nil {
		if svc.Kind != "http" {
			d.errorf(v, "%s: body is for http services", label)
			return nil
		}
		svc.Body, _ = d.str(v, label+": body")
	} else if svc.Kind == "http" {
		svc.Body = "Hello World"
	}
	return svc
}
