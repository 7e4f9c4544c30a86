package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"netlab/topology"
)

// Summary is the last line of a text plan, Terraform style.
func (p *Plan) Summary() string {
	if p.Empty() {
		return "No changes."
	}
	add, change, destroy := p.Counts()
	return fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", add, change, destroy)
}

// Line is one action as the text plan prints it: "+ veth    web:eth0 <-> host:veth1a2b3c4".
// Text from the lab file in it (a `run:` command, a sysctl value) is made
// printable: a control character cannot rewrite the plan on a terminal, and
// the line is one line.
func Line(a Action) string {
	return fmt.Sprintf("%s %-8s%s", a.Op(), a.Kind(), topology.Printable(a.Object()))
}

// WriteText prints the plan one action per line, then the summary.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, a := range p.Actions {
		b.WriteString(Line(a))
		b.WriteByte('\n')
		for _, d := range details(a) {
			b.WriteString("            " + d + "\n")
		}
	}
	b.WriteString(p.Summary())
	b.WriteByte('\n')
	for _, warning := range p.Warnings {
		b.WriteString("\nWarning: " + topology.PrintableLines(warning) + "\n")
	}
	for _, refusal := range p.Refusals {
		b.WriteString("\nRefused: this run cannot carry out the plan: " + topology.PrintableLines(refusal) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// details are the extra lines of an action that changes many things at once
// (the rules of an nftables table), printable as Line is.
func details(a Action) []string {
	d, ok := a.(interface{ Details() []string })
	if !ok {
		return nil
	}
	var out []string
	for _, l := range d.Details() {
		out = append(out, topology.Printable(l))
	}
	return out
}

// jsonAction is the stable JSON form of an action.
type jsonAction struct {
	Op       Op       `json:"op"`
	Kind     string   `json:"kind"`
	Object   string   `json:"object"`
	Details  []string `json:"details,omitempty"`
	Commands []string `json:"commands"`
}

type jsonPlan struct {
	Lab      string       `json:"lab"`
	Actions  []jsonAction `json:"actions"`
	Add      int          `json:"add"`
	Change   int          `json:"change"`
	Destroy  int          `json:"destroy"`
	Summary  string       `json:"summary"`
	Warnings []string     `json:"warnings,omitempty"`
	Refusals []string     `json:"refusals,omitempty"` // why up would refuse this plan (Plan.Refusals)
}

// WriteJSON prints the plan as one JSON document.
func (p *Plan) WriteJSON(w io.Writer) error {
	out := jsonPlan{Lab: p.Lab, Actions: []jsonAction{}, Summary: p.Summary(), Warnings: p.Warnings, Refusals: p.Refusals}
	for _, a := range p.Actions {
		// Object and details are the text plan's, escaped the same way: encoding/json
		// escapes C0 controls but would pass a bidi override through raw.
		out.Actions = append(out.Actions, jsonAction{Op: a.Op(), Kind: a.Kind(), Object: topology.Printable(a.Object()), Details: details(a), Commands: a.Commands()})
	}
	out.Add, out.Change, out.Destroy = p.Counts()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteCommands prints the plan as a shell script of ip and sysctl commands, each
// step preceded by the plan line it implements.
func (p *Plan) WriteCommands(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# netlab plan for lab %s, as the equivalent iproute2 commands.\n", p.Lab)
	for _, warning := range p.Warnings {
		fmt.Fprintf(&b, "#\n# Warning: %s\n", topology.Printable(warning))
	}
	for _, refusal := range p.Refusals {
		// As up refuses it: before any change.
		fmt.Fprintf(&b, "echo %s >&2; exit 1\n", shellQuote("netlab: this run cannot carry out the plan: "+refusal))
	}
	b.WriteString("set -e\n")
	if p.File != "" {
		fmt.Fprintf(&b, "\nnetlab __record %s %s  # record the lab's file, as up does, for netlab status and down\n", p.Lab, shellQuote(p.File))
	}
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "\n# %s\n", Line(a))
		for _, c := range a.Commands() {
			b.WriteString(c)
			b.WriteByte('\n')
		}
	}
	fmt.Fprintf(&b, "\n# %s\n", p.Summary())
	_, err := io.WriteString(w, b.String())
	return err
}
