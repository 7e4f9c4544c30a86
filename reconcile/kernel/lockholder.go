package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// HeldByAncestor reports the PID of the process holding a lab's lock when that
// process is an ancestor of this one: this netlab runs in a process that an `up`
// of the lab started (an exec: command, a run: process), on the same lab. That
// up may be waiting for this very process, and then the lock would never come
// (see cmd/netlab's lock). 0 when the lock is free, held by another process, or
// the holder cannot be told (it is in a PID namespace this one does not see).
func (d *Driver) HeldByAncestor(lab string) int {
	st, err := d.state.lstat(d.state.lockPath(lab))
	if err != nil {
		return 0
	}
	holders := flockHolders(st)
	holder := 0
	ancestors(func(pid int, _ []string) bool {
		if holders[pid] {
			holder = pid
		}
		return holder == 0
	})
	return holder
}

// ownGroups is the process groups of this process and of each of its
// ancestors: a lab entry whose group is one of them holds this netlab, or the
// shell or sudo that started it, and signalling that group reaches netlab.
func ownGroups() map[int]bool {
	groups := map[int]bool{}
	if pgid, err := unix.Getpgid(0); err == nil {
		groups[pgid] = true
	}
	ancestors(func(_ int, stat []string) bool {
		if len(stat) > 2 {
			if pgid, err := strconv.Atoi(stat[2]); err == nil {
				groups[pgid] = true
			}
		}
		return true
	})
	return groups
}

// ancestors calls f with this process's parent, then its parent's, and so on,
// each with the fields of its stat (see statFields; nil when unreadable, the
// last one then), while f returns true. At most 64 generations: a process
// reading a reused PID could go round.
func ancestors(f func(pid int, stat []string) bool) {
	for pid, i := os.Getppid(), 0; pid > 1 && i < 64; i++ {
		stat := statFields(procRoot + "/" + strconv.Itoa(pid))
		if !f(pid, stat) || len(stat) < 2 {
			return
		}
		pid, _ = strconv.Atoi(stat[1])
	}
}

// flockHolders reads /proc/locks for the processes holding a flock on the file
// st describes (lines "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; those
// of waiters start with "->" and are skipped).
func flockHolders(st unix.Stat_t) map[int]bool {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil
	}
	file := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	out := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] == "->" || f[1] != "FLOCK" || f[5] != file {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil && pid > 0 {
			out[pid] = true
		}
	}
	return out
}
