package kernel

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// The threads that create namespaces go back to netlab's own namespace and
// serve again: none may be left, unlocked, inside a lab's namespace, where
// whatever Go runs on it next would act.
func TestCreationThreadsGoBackToNetlabsNamespace(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	l := newLab("threads").bridge("br0", "10.21.0.1/24")
	for i := range 24 {
		l.container(fmt.Sprintf("c%d", i), fmt.Sprintf("v%d", i), "br0", fmt.Sprintf("10.21.0.%d/24", i+2))
	}
	up(t, d, l.s)
	labNetns := map[uint64]string{}
	for ns := range l.s.Namespaces {
		var st unix.Stat_t
		if err := unix.Stat(sb.nsPath(ns), &st); err != nil {
			t.Fatal(err)
		}
		labNetns[st.Ino] = ns
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err != nil {
			continue // the thread has exited meanwhile
		}
		if ns, ok := labNetns[st.Ino]; ok {
			t.Errorf("thread %s is still inside the lab's namespace %s", task.Name(), ns)
		}
	}
}
