package kernel

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// TestRuleTextReadsBackWhatNetlabWrites: a rule of the lab's table that is not
// the file's is shown decoded, not as "<a rule other than the file's>". Every
// rule of the shipped labs, compiled to expressions and decoded, reads as the
// file's rule does in the plan (without its comment, which is shown apart).
func TestRuleTextReadsBackWhatNetlabWrites(t *testing.T) {
	files, _ := filepath.Glob("../../labs/*.yaml")
	files = append(files, "../../tests/testdata/spine.yaml")
	n := 0
	for _, file := range files {
		desired := harness.Desired(t, file)
		for ns, table := range desired.Tables {
			for _, c := range table.Chains {
				for _, r := range c.Rules {
					exprs, err := compileRule(r)
					if err != nil {
						t.Fatal(err)
					}
					want := strings.TrimSuffix(r.Text(), fmt.Sprintf(" comment %q", r.Comment))
					if got := ruleText(exprs); got != want {
						t.Errorf("%s %s %s:\n got %s\nwant %s", filepath.Base(file), ns, c.Name, got, want)
					}
					n++
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d rules", n)
	}
}

// TestRemovedRulesShowAsRules: a rule of the lab's table that the file no
// longer has, or that was added by hand, shows in the plan as the rule it is
// (as the kernel holds it), with its handle.
func TestRemovedRulesShowAsRules(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, natLab)
	up(t, d, desired)
	sb.mustRun("host", "nft", `insert rule inet netlab-nat forward iifname "eth9" ip saddr 10.0.0.0/8 tcp dport 22 counter drop comment "mine"`)

	// The file without the last rule of each chain of the host's table.
	edited := desired.Clone()
	old := desired.Tables["host"]
	table := &r.Table{NS: old.NS, Name: old.Name, Sets: old.Sets}
	var removed []string
	for _, c := range old.Chains {
		copied := *c
		if n := len(c.Rules); n > 0 {
			copied.Rules = c.Rules[:n-1]
			removed = append(removed, "- "+c.Name+": "+c.Rules[n-1].Text()+" (handle ")
		}
		table.Chains = append(table.Chains, &copied)
	}
	edited.Tables["host"] = table
	plan, err := r.MakePlan(t.Context(), d, edited)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	plan.WriteText(&b)
	want := append(removed, `- forward: iifname "eth9" ip saddr 10.0.0.0/8 tcp dport 22 counter drop comment "mine" (handle `)
	for _, w := range want {
		if !strings.Contains(b.String(), w) {
			t.Errorf("plan does not show %q:\n%s", w, b.String())
		}
	}
	if strings.Contains(b.String(), "…") || strings.Contains(b.String(), "other than the file") {
		t.Errorf("plan shows a rule it could not decode:\n%s", b.String())
	}
}
