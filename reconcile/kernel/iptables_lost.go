package kernel

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"

	"netlab/reconcile"
)

// Docker's iptables layout whose marks are lost: the script of `plan -o
// commands` killed between iptables-restore and netlab __mark-iptables, or
// `iptables-save | iptables-restore` run over a lab's rules (iptables-save
// does not print netlab's marks, so every one is dropped). Unmarked, the
// layout is a dockerd's to netlab: up refuses, down leaves it. What the
// lab's __save-iptables noted (iptables.json) is then the only proof of
// whose it is: down keeps it, and says what is left and how to recover.

// scriptLeft is what the lab's script wrote in a namespace's tables, still
// unmarked: the Docker chains that were not there when __save-iptables took
// saved (nor netlab's by a record), every unmarked rule in them newer than
// it; and the unmarked rules newer than it in the other chains.
func (k *iptKernel) scriptLeft(saved iptSaved) (chains []string, rules map[string][]*nftables.Rule) {
	rules = map[string][]*nftables.Rule{}
	for _, key := range k.order {
		if dockerChain(key) && !slices.Contains(saved.Existed, key) && !k.rec.made(key) && k.allSince(key, saved) {
			chains = append(chains, key)
		}
	}
	for _, key := range k.order {
		if slices.Contains(chains, key) {
			continue
		}
		table, _ := splitKey(key)
		for _, r := range k.rules[key] {
			if _, ok := markOf(r.UserData); !ok && k.writtenSince(table, r, saved) {
				rules[key] = append(rules[key], r)
			}
		}
	}
	return chains, rules
}

// removal is the commands that take chains and rules out by hand, and put
// FORWARD's policy back (to policy; ACCEPT when unknown).
func removal(ns string, chains []string, rules map[string][]*nftables.Rule, order []string, policy string) string {
	prefix := ""
	if ns != reconcile.Host {
		prefix = "ip netns exec " + ns + " "
	}
	var out []string
	for _, key := range order {
		table, name := splitKey(key)
		for _, r := range rules[key] {
			out = append(out, fmt.Sprintf("%snft delete rule ip %s %s handle %d", prefix, table, name, r.Handle))
		}
	}
	for _, key := range chains {
		table, name := splitKey(key)
		out = append(out, fmt.Sprintf("%snft flush chain ip %s %s", prefix, table, name))
	}
	for _, key := range chains {
		table, name := splitKey(key)
		out = append(out, fmt.Sprintf("%snft delete chain ip %s %s", prefix, table, name))
	}
	if policy == "" {
		policy = "ACCEPT"
	}
	out = append(out, fmt.Sprintf("%siptables -P FORWARD %s", prefix, policy))
	return "\n      " + strings.Join(out, "\n      ")
}

// chainNames lists chains' keys as "ip filter DOCKER, ip nat DOCKER".
func chainNames(keys []string) string {
	var out []string
	for _, key := range keys {
		table, name := splitKey(key)
		out = append(out, "ip "+table+" "+name)
	}
	return strings.Join(out, ", ")
}

// scriptLeftMessage says what of the lab's script is left unmarked in ns,
// and how to recover; "" when no Docker chain of it is.
func (k *iptKernel) scriptLeftMessage(lab, ns string, saved iptSaved) string {
	chains, rules := k.scriptLeft(saved)
	if len(chains) == 0 {
		return ""
	}
	n := 0
	for _, rs := range rules {
		n += len(rs)
	}
	return fmt.Sprintf("iptables %s: lab %s's script wrote Docker's iptables layout there (netlab __save-iptables noted the tables before it) "+
		"and its rules were never marked as the lab's (netlab __mark-iptables did not run, or failed): %s and %d unmarked rules written since "+
		"in other chains are left, and netlab takes them for a dockerd's. "+
		"If they are exactly lab %s's rules, run netlab __mark-iptables %s %s (it marks them only then), and netlab down --lab %s removes them "+
		"and puts FORWARD's policy back; else remove them by hand (check first that each is the lab's), then netlab down --lab %s:%s",
		ns, lab, chainNames(chains), n, lab, lab, ns, lab, lab, removal(ns, chains, rules, k.order, saved.Policy))
}

// lostMarks is the hint a conflict over Docker chains netlab did not create
// ends with: the chains may be a lab's whose marks were lost; no note of
// __save-iptables says which rules were the lab's or FORWARD's policy
// before, so the commands remove the chains and the rules jumping to them.
func (k *iptKernel) lostMarks(ns string) string {
	var chains []string
	for _, key := range k.order {
		if dockerChain(key) && !k.rec.made(key) {
			chains = append(chains, key)
		}
	}
	if len(chains) == 0 {
		return ""
	}
	jumps := map[string][]*nftables.Rule{}
	for _, key := range k.order {
		table, _ := splitKey(key)
		for _, r := range k.rules[key] {
			if _, ok := markOf(r.UserData); !ok && !slices.Contains(chains, key) && slices.Contains(chains, table+"/"+jumpTarget(r)) {
				jumps[key] = append(jumps[key], r)
			}
		}
	}
	return fmt.Sprintf("iptables %s: if no dockerd runs and these chains are a netlab lab's whose marks were lost "+
		"(iptables-save | iptables-restore drops netlab's marks; netlab down then leaves them), remove them by hand, "+
		"with the lab's other rules iptables-save shows, and put FORWARD's policy back to what it was before the lab:%s",
		ns, removal(ns, chains, jumps, k.order, ""))
}

// scriptLeftovers refuses to forget a lab while Docker chains its script
// wrote are left unmarked in a namespace its __save-iptables noted: that
// note is the only proof they are the lab's.
func (d *Driver) scriptLeftovers(lab string) error {
	saved, err := d.state.savedIptables(lab)
	if err != nil {
		return err
	}
	var problems []string
	for _, ns := range sortedNames(saved) {
		if ns != reconcile.Host {
			if _, err := os.Stat(d.netnsPath(ns)); errors.Is(err, os.ErrNotExist) {
				continue // the namespace went, its tables with it
			}
		}
		k, err := d.readIptablesIn(ns)
		if err != nil {
			return err
		}
		if msg := k.scriptLeftMessage(lab, ns, saved[ns]); msg != "" {
			problems = append(problems, msg)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s\nlab %s is not forgotten: its state (%s) is kept until then",
		strings.Join(problems, "\n"), lab, d.state.savedIptablesPath(lab))
}

// recovery is what a conflict over unmarked Docker chains ends with: how to
// recover the lab's script's rules (when its __save-iptables noted the
// tables), else how to remove a layout whose marks were lost.
func (d *Driver) recovery(k *iptKernel, ns, lab string) []string {
	if saved, err := d.state.savedIptables(lab); err == nil {
		if s, ok := saved[ns]; ok {
			if msg := k.scriptLeftMessage(lab, ns, s); msg != "" {
				return []string{msg}
			}
		}
	}
	if msg := k.lostMarks(ns); msg != "" {
		return []string{msg}
	}
	return nil
}
