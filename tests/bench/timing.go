package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// timed runs a command and returns its wall time, peak RSS and output.
func timed(name string, args ...string) (time.Duration, float64, string) {
	cmd := exec.Command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		fail("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out)))
	}
	return d, peakRSS(cmd), string(out)
}

// peakRSS is the peak RSS of cmd, which has ended, in MB.
func peakRSS(cmd *exec.Cmd) float64 {
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024
	}
	return 0
}

// timedFresh runs a command in a fresh PID namespace (with its own /proc, and
// so its own mount namespace, whose /run/netns stays a peer of the sandbox's)
// and returns its wall time and peak RSS as measured inside, by this program
// run with -timed: unshare's own start is not counted.
func timedFresh(name string, args ...string) (time.Duration, float64) {
	self, _ := os.Executable()
	argv := append([]string{"--pid", "--fork", "--mount-proc", "--propagation", "unchanged", "--kill-child",
		self, "-timed", "--", name}, args...)
	cmd := exec.Command("unshare", argv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		fail("unshare --pid %s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out)))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var secs, rss float64
	if _, err := fmt.Sscanf(lines[len(lines)-1], "timed %g %g", &secs, &rss); err != nil {
		fail("unshare --pid %s: no timing in its output:\n%s", name, tail(string(out)))
	}
	return time.Duration(secs * float64(time.Second)), rss
}

// runTimed is the -timed mode: it runs argv, passing its output through, and
// prints "timed SECONDS RSS_MB" last.
func runTimed(argv []string) int {
	if len(argv) == 0 {
		return 2
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 1
	}
	fmt.Printf("\ntimed %.6f %.1f\n", d.Seconds(), peakRSS(cmd))
	return 0
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

func parseDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	case "µs":
		return time.Duration(f * float64(time.Microsecond))
	}
	return time.Duration(f * float64(time.Second))
}

func median(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Seconds()
}
