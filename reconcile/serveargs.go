package reconcile

import (
	"fmt"
	"strconv"
)

// ServiceFromArgs is the service that `netlab serve ARGS` runs (args[0] is
// "serve"): the inverse of Service.Args, for `netlab __start` and for the
// serve command itself.
func ServiceFromArgs(args []string) (*Service, error) {
	bad := fmt.Errorf("want serve --http PORT [--body TEXT], --tcp-echo PORT, --dns PORT [--name NAME=ADDR]... [--forward] or --proxy [IP:]PORT/PROTO --to ADDR:PORT, not %q", args)
	if len(args) < 3 || args[0] != "serve" {
		return nil, bad
	}
	port := func(s string) (int, bool) {
		p, err := strconv.Atoi(s)
		return p, err == nil && p > 0 && p < 65536
	}
	switch args[1] {
	case "--http", "--tcp-echo":
		s := &Service{Kind: args[1][2:]}
		var ok bool
		if s.Port, ok = port(args[2]); !ok {
			return nil, bad
		}
		switch {
		case s.Kind == "http" && len(args) == 5 && args[3] == "--body":
			s.Body = args[4]
		case len(args) != 3:
			return nil, bad
		}
		return s, nil
	case "--dns":
		return dnsFromArgs(args, bad)
	case "--proxy":
		return proxyFromArgs(args, bad)
	}
	return nil, bad
}
