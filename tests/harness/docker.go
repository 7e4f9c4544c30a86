package harness

import (
	"errors"
	"strings"

	"netlab/topology"
)

// PendingFeature says why a lab file cannot load yet when the only reason is a
// low-level key the Docker level emits but another part of issue 17 builds:
// the embedded DNS server (`serve: [{dns: ...}]`, for containers on
// user-defined networks) and the userland proxy (a bridge's `userland-proxy:
// true`, Docker's default). It returns "" when the file loads, or fails for any
// other reason too. Tests of labs that need them skip with its reason until
// they are built.
func PendingFeature(path string) string {
	_, err := topology.Load(path)
	var errs topology.Errors
	if err == nil || !errors.As(err, &errs) {
		return ""
	}
	var dns, proxy bool
	for _, e := range errs {
		switch {
		case strings.Contains(e.Msg, `unknown key "dns"`), strings.Contains(e.Msg, "serve: want {http: PORT} or {tcp-echo: PORT}"):
			dns = true
		case strings.Contains(e.Msg, `unknown key "userland-proxy"`):
			proxy = true
		default:
			return ""
		}
	}
	var needs []string
	if dns {
		needs = append(needs, "the embedded DNS (serve: {dns: ...})")
	}
	if proxy {
		needs = append(needs, "the userland proxy (bridge userland-proxy: true)")
	}
	return path + " needs " + strings.Join(needs, " and ") + ", not built yet (issue 17, helper M)"
}
