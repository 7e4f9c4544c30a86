package reconcile

import (
	"fmt"
	"io"
)

// Trace is what `netlab trace` found out about one probe: the path of the
// packet and of its reply through the lab's namespaces, with the routing
// decision, the bridge crossed and the nftables rules met in each, and the
// verdict. Its JSON form is documented by docs/trace.schema.json.
type Trace struct {
	Lab      string `json:"lab"`
	From     string `json:"from"`     // the namespace the probe left from, as the lab file names it ("host")
	To       string `json:"to"`       // the target as given
	Protocol string `json:"protocol"` // tcp, udp or icmp
	// Probe is the packet as it left: "192.0.2.2:40123 -> 192.0.2.1:8000".
	Probe   string    `json:"probe"`
	Verdict string    `json:"verdict"` // see the Verdict* constants
	Detail  string    `json:"detail"`  // the verdict in a sentence
	Far     *TraceEnd `json:"delivered,omitempty"`
	Drop    *TraceHit `json:"dropped_by,omitempty"`
	// Where the packet was last seen when it was dropped or had no route.
	At     string     `json:"at,omitempty"`
	Path   []TraceHop `json:"path"`
	Reply  []TraceHop `json:"reply"`
	Answer string     `json:"answer"` // what the prober got back: connected, refused, echo reply, timeout...
	Notes  []string   `json:"notes,omitempty"`
}

// The verdicts of a trace.
const (
	VerdictDelivered = "delivered" // the packet reached the namespace that owns its destination
	VerdictDropped   = "dropped"   // a rule (or a chain's policy) dropped it
	VerdictNoRoute   = "no route"  // a namespace had no route for it
	VerdictLost      = "lost"      // it left a namespace and was not seen again (no neighbour, rp_filter...)
)

// TraceEnd is where a delivered packet arrived, and how it looked there.
type TraceEnd struct {
	Namespace string `json:"namespace"`
	Interface string `json:"interface"`
	Source    string `json:"source"`      // the source address (and port) the far end saw
	Dest      string `json:"destination"` // the address (and port) it was delivered to
}

// TraceHop is the packet's visit to one namespace.
type TraceHop struct {
	Namespace string       `json:"namespace"`
	In        string       `json:"in,omitempty"`  // the interface it came in by ("" where it was made)
	Out       string       `json:"out,omitempty"` // the interface it left by ("" where it ended)
	Arrived   string       `json:"arrived"`       // the packet as it came in (or was made)
	Left      string       `json:"left,omitempty"`
	Route     *TraceRoute  `json:"route,omitempty"`
	Bridge    *TraceBridge `json:"bridge,omitempty"`
	Rules     []TraceHit   `json:"rules"`
	NAT       []TraceNAT   `json:"nat"`
	Local     bool         `json:"local,omitempty"` // delivered to a socket of this namespace
}

// TraceRoute is the routing decision in a namespace, as `ip route get` says.
type TraceRoute struct {
	Match   string `json:"match"`             // the route that matched: "default via 172.17.0.1 dev eth0", "local 192.0.2.1"
	Type    string `json:"type"`              // unicast, local, unreachable, ...
	Gateway string `json:"gateway,omitempty"` // next hop
	Dev     string `json:"dev,omitempty"`
	Error   string `json:"error,omitempty"` // the kernel's answer when there is no route
}

// TraceBridge is a bridge the packet crossed in a namespace.
type TraceBridge struct {
	Name    string `json:"name"`
	MAC     string `json:"mac"`            // the destination MAC looked up
	Port    string `json:"port,omitempty"` // the port it goes out of ("" flooded)
	Learned bool   `json:"learned"`        // found in the forwarding database (else flooded to every port)
	// Switched: the frame went from one port of the bridge to another without
	// being routed (it was not for the bridge's own MAC).
	Switched bool `json:"switched"`
}

// TraceHit is one nftables rule (or chain policy) that decided something for
// the packet: the kernel's own trace event, with the rule's text.
type TraceHit struct {
	Namespace string `json:"namespace"`
	Hook      string `json:"hook"`   // prerouting, input, forward, output, postrouting
	Family    string `json:"family"` // inet, ip, ip6, bridge, ...
	Table     string `json:"table"`
	Chain     string `json:"chain"`
	Handle    uint64 `json:"handle,omitempty"` // the rule's handle (0: the chain's policy)
	Rule      string `json:"rule"`             // the rule's text; "policy accept" for a policy
	Verdict   string `json:"verdict"`          // accept, drop, jump CHAIN, continue, return...
	Owner     string `json:"owner"`            // "netlab (lab L)", or "not netlab's"
}

// TraceNAT is an address translation the packet underwent.
type TraceNAT struct {
	Kind   string `json:"kind"` // dnat, snat, masquerade, redirect
	Rule   string `json:"rule"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	Before string `json:"before"` // the destination (dnat, redirect) or source (snat, masquerade) before
	After  string `json:"after"`  // and after`
}

// RenderTrace writes a trace for a person.
func RenderTrace(w io.Writer, t *Trace) {
	fmt.Fprintf(w, "trace %s -> %s (%s), lab %s\n", t.From, t.To, t.Protocol, t.Lab)
	fmt.Fprintf(w, "probe: %s\n", t.Probe)
	fmt.Fprintln(w)
	renderHops(w, t.Path)
	if len(t.Reply) > 0 {
		fmt.Fprintln(w, "reply:")
		renderHops(w, t.Reply)
	}
	fmt.Fprintf(w, "answer: %s\n", t.Answer)
	fmt.Fprintf(w, "verdict: %s: %s\n", t.Verdict, t.Detail)
	for _, n := range t.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func renderHops(w io.Writer, hops []TraceHop) {
	for _, h := range hops {
		where := h.Namespace
		switch {
		case h.In != "" && h.Out != "":
			where += fmt.Sprintf(" (in %s, out %s)", h.In, h.Out)
		case h.In != "":
			where += fmt.Sprintf(" (in %s)", h.In)
		case h.Out != "":
			where += fmt.Sprintf(" (out %s)", h.Out)
		}
		fmt.Fprintf(w, "  %s\n", where)
		fmt.Fprintf(w, "    packet      %s\n", h.Arrived)
		for _, r := range h.Rules {
			fmt.Fprintf(w, "    %-11s %s %s %s: %s -> %s [%s]\n", r.Hook, r.Family, r.Table, r.Chain, r.Rule, r.Verdict, r.Owner)
		}
		for _, n := range h.NAT {
			side := "destination"
			if n.Kind != "dnat" && n.Kind != "redirect" {
				side = "source"
			}
			fmt.Fprintf(w, "    %-11s %s %s -> %s (by %s %s)\n", n.Kind, side, n.Before, n.After, n.Table, n.Chain)
		}
		if h.Route != nil {
			if h.Route.Error != "" {
				fmt.Fprintf(w, "    route       %s\n", h.Route.Error)
			} else {
				fmt.Fprintf(w, "    route       %s\n", h.Route.Match)
			}
		}
		if b := h.Bridge; b != nil {
			how := "routed out of"
			if b.Switched {
				how = "switched by"
			}
			switch {
			case b.Learned:
				fmt.Fprintf(w, "    bridge      %s %s: %s learned on port %s\n", how, b.Name, b.MAC, b.Port)
			case b.MAC == "":
				fmt.Fprintf(w, "    bridge      %s %s: next hop's MAC not known yet, flooded to every port\n", how, b.Name)
			default:
				fmt.Fprintf(w, "    bridge      %s %s: %s not learned, flooded to every port\n", how, b.Name, b.MAC)
			}
		}
		if h.Local {
			fmt.Fprintf(w, "    delivered   to this namespace\n")
		} else if h.Left != "" && h.Left != h.Arrived {
			fmt.Fprintf(w, "    left as     %s\n", h.Left)
		}
	}
}
