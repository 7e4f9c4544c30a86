package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"netlab/topology"
)

// One-shot setup commands: the `exec:` list of a namespace (or of the host) runs
// once, in order, each with `sh -c` in the namespace, after its links, addresses
// and routes exist and before its processes start. The kernel cannot say what
// ran, so the driver records it: the commands that ran and succeeded, in order,
// each with a hash of itself and every command before it. A plan runs the list
// from the first command whose hash differs from the record onward, and nothing
// when the record matches. A namespace the plan creates has run nothing.

// ExecCommand is one `exec:` command, as listed in the file or as recorded.
type ExecCommand struct {
	Command string `json:"command"`
	// Hash is of this command and every one before it in the list: equal
	// hashes at a position mean equal lists up to it.
	Hash string `json:"hash"`
}

// ExecList turns a namespace's commands into the list the plan compares.
func ExecList(commands []string) []ExecCommand {
	var out []ExecCommand
	for _, c := range commands {
		out = appendExec(out, c)
	}
	return out
}

// appendExec adds a command to a list, hashed with the commands before it.
func appendExec(list []ExecCommand, command string) []ExecCommand {
	prev := ""
	if len(list) > 0 {
		prev = list[len(list)-1].Hash
	}
	sum := sha256.Sum256([]byte(prev + "\x00" + command))
	return append(list, ExecCommand{Command: command, Hash: hex.EncodeToString(sum[:8])})
}

// RecordedExec is the record after command number index (from 0) of a list ran
// and succeeded, given the record before: the commands before it, then it. It
// is what the script of `plan -o commands` records through netlab, as `up` does.
func RecordedExec(record []ExecCommand, index int, command string) ([]ExecCommand, error) {
	if index > len(record) {
		return nil, fmt.Errorf("command %d of the list ran before command %d was recorded", index+1, len(record)+1)
	}
	return appendExec(slices.Clone(record[:index]), command), nil
}

// commonExecs is how many commands at the start of two lists are the same.
func commonExecs(a, b []ExecCommand) int {
	n := 0
	for n < len(a) && n < len(b) && a[n].Hash == b[n].Hash {
		n++
	}
	return n
}

// RunExec runs one `exec:` command of a namespace. The commands of one
// namespace run one after another, in order (Serial), and the first failure
// stops the rest; the record then holds what succeeded before it.
type RunExec struct {
	Lab   string
	NS    string
	Index int           // the command's position in the list, from 0
	List  []ExecCommand // the list up to and including this command: the record once it succeeded
	Why   string        // why it runs again ("" for a first run)
	UTS   bool          // the namespace has a hostname of its own (see CreateUTS): the command runs there
}

// Command is the command this action runs.
func (a RunExec) Command() string { return a.List[a.Index].Command }

func (a RunExec) Op() Op       { return OpAdd }
func (a RunExec) Phase() Phase { return phaseExec }
func (a RunExec) Kind() string { return "exec" }
func (a RunExec) Object() string {
	s := a.NS + ": " + a.Command()
	if a.Why != "" {
		s += " (" + a.Why + ")"
	}
	return s
}

// SortKey keeps a namespace's commands in their order in the plan.
func (a RunExec) SortKey() string { return fmt.Sprintf("%s\x00%08d", a.NS, a.Index) }

// Serial makes Apply run a namespace's commands one after another.
func (a RunExec) Serial() string { return "exec " + a.NS }

// Commands run the command as `up` does, sh -c in the namespace, and record
// that it ran through netlab (the same code as `up`), so that the next `up`
// does not run it again.
func (a RunExec) Commands() []string {
	enter := nsExec(a.NS)
	if a.UTS {
		enter += "nsenter --uts=" + UTSPath("/run/netlab", a.Lab, a.NS) + " "
	}
	return []string{
		enter + "sh -c " + shellQuote(a.Command()),
		fmt.Sprintf("netlab __record-exec %s %s %d %s  # record that it ran, so that up does not run it again", a.Lab, a.NS, a.Index, shellQuote(a.Command())),
	}
}

func (a RunExec) Namespaces() []string                         { return []string{a.NS} }
func (a RunExec) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyRunExec(ctx, a) }

// ForgetExec drops commands from the record of a namespace that stays: they
// left the file. Nothing undoes what they did (an exec command has no inverse).
type ForgetExec struct {
	Lab  string
	NS   string
	Keep []ExecCommand // what stays recorded
	Gone []ExecCommand
}

func (a ForgetExec) Op() Op       { return OpDelete }
func (a ForgetExec) Phase() Phase { return phaseForgetExec }
func (a ForgetExec) Kind() string { return "exec" }
func (a ForgetExec) Object() string {
	return fmt.Sprintf("%s: forget %s that ran (what they did is not undone)", a.NS, Plural(len(a.Gone), "command"))
}
func (a ForgetExec) Details() []string {
	out := make([]string, len(a.Gone))
	for i, c := range a.Gone {
		out[i] = c.Command
	}
	return out
}

// Commands shows what is forgotten, as comments, and forgets it through netlab
// (the same code as `up`): without that, the record would still list them, and
// the next `up` would skip them were they put back in the file.
func (a ForgetExec) Commands() []string {
	lines := []string{"# netlab forgets that these ran; nothing undoes them:"}
	for _, c := range a.Gone {
		lines = append(lines, "#   "+topology.Printable(c.Command))
	}
	return append(lines, fmt.Sprintf("netlab __forget-exec %s %s %d  # keep the record of the first %d, as up does", a.Lab, a.NS, len(a.Keep), len(a.Keep)))
}

func (a ForgetExec) Namespaces() []string                         { return []string{a.NS} }
func (a ForgetExec) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyForgetExec(ctx, a) }

// execs runs the commands of each namespace from the first one that differs
// from its record onward, and forgets the recorded commands a namespace that
// stays no longer lists. A namespace the plan deletes takes its record along.
func (d *differ) execs() {
	for _, ns := range sortedKeys(d.desired.Execs, strings.Compare) {
		want := d.desired.Execs[ns]
		var have []ExecCommand
		if _, ok := d.observed.Namespaces[ns]; (ok || ns == Host) && !d.goneNetns[ns] {
			have = d.observed.Execs[ns]
		}
		i := commonExecs(want, have)
		for j := i; j < len(want); j++ {
			why := ""
			switch {
			case j >= len(have):
			case j == i:
				why = "edited"
			default:
				why = "again: an earlier command was edited"
			}
			d.add(RunExec{Lab: d.desired.Lab, NS: ns, Index: j, List: want[:j+1], Why: why, UTS: d.desired.UTS[ns] != ""})
		}
		if i == len(want) && len(have) > i {
			d.add(ForgetExec{Lab: d.desired.Lab, NS: ns, Keep: want, Gone: have[i:]})
		}
	}
	for _, ns := range sortedKeys(d.observed.Execs, strings.Compare) {
		if _, ok := d.desired.Execs[ns]; ok || d.goneNetns[ns] || len(d.observed.Execs[ns]) == 0 {
			continue
		}
		d.add(ForgetExec{Lab: d.desired.Lab, NS: ns, Gone: d.observed.Execs[ns]})
	}
}
