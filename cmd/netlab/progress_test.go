package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty returns both ends of a new pseudo-terminal: what is written to the
// terminal end can be read from the other.
func openPty(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptmx, tty
}

// TestProgressLineOnATerminalOnly: a run that lasts over two seconds shows
// "netlab: applying step N/TOTAL" on a terminal, and nothing when stderr is a
// pipe or a file.
func TestProgressLineOnATerminalOnly(t *testing.T) {
	ptmx, tty := openPty(t)
	a := &app{Streams: Streams{Err: tty}}
	progress, stop := a.progressLine("applying", 10)
	if progress == nil {
		t.Fatal("no progress callback for a terminal")
	}
	progress(3)
	time.Sleep(2500 * time.Millisecond)
	stop()
	buf := make([]byte, 4096)
	ptmx.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := ptmx.Read(buf)
	if got := string(buf[:n]); !strings.Contains(got, "netlab: applying step 3/10") {
		t.Errorf("terminal got %q, want a progress line", got)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := &app{Streams: Streams{Err: w}}
	if progress, stop := b.progressLine("applying", 10); progress != nil {
		stop()
		t.Error("a progress callback for a pipe: scripts' logs would get carriage returns")
	}
	w.Close()
	out := make([]byte, 16)
	if n, _ := r.Read(out); n != 0 {
		t.Errorf("the pipe got %q", out[:n])
	}
}
