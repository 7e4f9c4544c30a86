package kernel

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	r "netlab/reconcile"
)

// Many labs, each its own netlab run (driver), join and leave one host sysctl
// at once: the record's lock keeps every holder, and the last to leave puts
// the original back.
func TestHostSysctlRecordUnderConcurrentLabs(t *testing.T) {
	sb := newSandbox(t)
	sb.mustRun("host", "sysctl", "-qw", "net.ipv4.ip_forward=0")
	const labs = 8
	drivers := make([]*Driver, labs)
	for i := range drivers {
		drivers[i] = sb.driver()
	}
	set := func(i int, restore bool) error {
		return drivers[i].Apply(t.Context(), r.SetSysctl{Lab: fmt.Sprintf("lab%d", i), SysctlKey: r.SysctlKey{NS: r.Host, Path: "net/ipv4/ip_forward"}, Value: "1", Restore: restore})
	}
	var wg sync.WaitGroup
	errs := make([]error, labs)
	for i := range labs {
		wg.Go(func() { errs[i] = set(i, false) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("lab%d: %v", i, err)
		}
	}
	record, err := drivers[0].state.readHostSysctls()
	if err != nil {
		t.Fatal(err)
	}
	if e := record["net/ipv4/ip_forward"]; e == nil || len(e.Labs) != labs || e.Original != "0" || e.Value != "1" {
		t.Fatalf("record after %d labs joined: %+v", labs, e)
	}
	// Another value, from yet another lab, is refused at apply time too.
	err = drivers[0].Apply(t.Context(), r.SetSysctl{Lab: "other", SysctlKey: r.SysctlKey{NS: r.Host, Path: "net/ipv4/ip_forward"}, Value: "0"})
	if err == nil || !strings.Contains(err.Error(), "is still up") {
		t.Errorf("a lab wanting another value: %v", err)
	}
	for i := range labs {
		wg.Go(func() { errs[i] = set(i, true) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("lab%d restore: %v", i, err)
		}
	}
	if v := strings.TrimSpace(sb.mustRun("host", "sysctl", "-n", "net.ipv4.ip_forward")); v != "0" {
		t.Errorf("ip_forward after every lab let go = %s, want 0", v)
	}
	if fileExists(drivers[0].state.hostSysctlsPath()) {
		t.Errorf("the record outlives the last lab")
	}
}
