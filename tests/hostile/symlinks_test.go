package hostile

import (
	"regexp"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// hostsLab is a small lab whose namespaces get a generated /etc/netns/NS/hosts.
const hostsLab = `name: hosts
bridges:
  br0: {addresses: [10.0.0.1/24], resolve: true}
namespaces:
  c1:
    interfaces:
      eth0: {addresses: [10.0.0.2/24]}
  c2:
    interfaces:
      eth0: {addresses: [10.0.0.3/24]}
links:
  - [c1:eth0, br0]
  - [c2:eth0, br0]
`

// withoutLocks drops netlab's lock files from a listing: with a (planted)
// state directory of the lab there, a refused run keeps the lab's lock file,
// which is harmless and taken again by the next run.
func withoutLocks(state string) string { return lockLine.ReplaceAllString(state, "") }

var lockLine = regexp.MustCompile(`(?m)^[a-z0-9-]+\.lock\n`)

// target is a file or directory outside netlab's directories that a planted
// symlink points at: its listing, contents and modes must not change.
func target(sb *harness.Sandbox) string {
	sb.T.Helper()
	return sb.OK("sh", "-c", `find /run/target -printf '%M %p\n' | sort; find /run/target -type f | sort | xargs cat`)
}

func plantTarget(sb *harness.Sandbox) {
	sb.T.Helper()
	sb.OK("sh", "-c", "mkdir -p /run/target/dir && chmod 755 /run/target && echo 'target file' > /run/target/file && chmod 640 /run/target/file && "+
		"echo 'target hosts' > /run/target/dir/hosts && chmod 644 /run/target/dir/hosts")
}

// TestSymlinkInEtcNetnsIsAConflict: /etc/netns/NODE, or its hosts.tmp, as a
// symlink is not netlab's: up fails with a conflict before any change, and the
// link's target is untouched.
func TestSymlinkInEtcNetnsIsAConflict(t *testing.T) {
	for name, plant := range map[string]string{
		"directory": "mkdir -p /etc/netns && ln -s /run/target/dir /etc/netns/c1",
		"hosts":     "mkdir -p /etc/netns/c1 && ln -s /run/target/file /etc/netns/c1/hosts",
		"hosts.tmp": "mkdir -p /etc/netns/c1 && ln -s /run/target/file /etc/netns/c1/hosts.tmp",
		"fifo":      "mkdir -p /etc/netns/c1 && mkfifo /etc/netns/c1/hosts",
	} {
		t.Run(name, func(t *testing.T) {
			sb := harness.NewSandbox(t)
			lab := writeLab(t, "hosts.yaml", hostsLab)
			plantTarget(sb)
			sb.OK("sh", "-c", plant)
			before, files := withoutLocks(kernelState(sb)), target(sb)
			res := sb.Fails("netlab", "up", lab)
			if !strings.Contains(res.Stderr, "/etc/netns/c1") {
				t.Errorf("up: want a conflict naming /etc/netns/c1, got:\n%s%s", res.Stdout, res.Stderr)
			}
			if after := kernelState(sb); after != before {
				t.Errorf("a failed up changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if after := target(sb); after != files {
				t.Errorf("the symlink's target changed:\nbefore:\n%s\nafter:\n%s", files, after)
			}
		})
	}
}

// TestSymlinkInStateDirectoryIsRefused: a symlink planted in /run/netlab (the
// directory itself, a lab's directory, lab.json, sysctls.json, the lock file, a
// log, a creation intent) is
// never followed: the command fails naming it, before any change, and the
// link's target keeps its content and mode.
func TestSymlinkInStateDirectoryIsRefused(t *testing.T) {
	for name, plant := range map[string]string{
		"root":         "ln -s /run/target /run/netlab",
		"lab":          "mkdir -p /run/netlab && ln -s /run/target/dir /run/netlab/docker-bridge",
		"lab.json":     "mkdir -p /run/netlab/docker-bridge && ln -s /run/target/file /run/netlab/docker-bridge/lab.json",
		"sysctls.json": "mkdir -p /run/netlab/docker-bridge && ln -s /run/target/file /run/netlab/docker-bridge/sysctls.json",
		"creating":     "mkdir -p /run/netlab/docker-bridge && ln -s /run/target/dir /run/netlab/docker-bridge/creating",
		"lock":         "mkdir -p /run/netlab && ln -s /run/target/file /run/netlab/docker-bridge.lock",
		"log":          "mkdir -p /run/netlab/docker-bridge && ln -s /run/target/file /run/netlab/docker-bridge/web.log",
		"intent":       "mkdir -p /run/netlab/docker-bridge/creating && ln -s /run/target/file /run/netlab/docker-bridge/creating/ns=web",
		"exec record":  "mkdir -p /run/netlab/docker-bridge/exec && ln -s /run/target/file /run/netlab/docker-bridge/exec/web.json",
		"process dir":  "mkdir -p /run/netlab/docker-bridge/processes && ln -s /run/target/dir /run/netlab/docker-bridge/processes/web",
		"process file": "mkdir -p /run/netlab/docker-bridge/processes/web && ln -s /run/target/file /run/netlab/docker-bridge/processes/web/0123abcd.json",
	} {
		t.Run(name, func(t *testing.T) {
			sb := harness.NewSandbox(t)
			plantTarget(sb)
			sb.OK("sh", "-c", plant)
			before, files := withoutLocks(kernelState(sb)), target(sb)
			for _, args := range [][]string{
				{"up", "../../labs/docker-bridge-lowlevel.yaml"},
				{"down", "--lab", "docker-bridge"},
			} {
				res := sb.Fails(append([]string{"netlab"}, args...)...)
				if !strings.Contains(res.Stderr, "is a symlink; netlab does not follow links in its state directory") {
					t.Errorf("netlab %s: want the symlink named, got:\n%s%s", strings.Join(args, " "), res.Stdout, res.Stderr)
				}
				if after := withoutLocks(kernelState(sb)); after != before {
					t.Errorf("netlab %s changed the kernel:\nbefore:\n%s\nafter:\n%s", strings.Join(args, " "), before, after)
				}
				if after := target(sb); after != files {
					t.Errorf("netlab %s changed the symlink's target:\nbefore:\n%s\nafter:\n%s", strings.Join(args, " "), files, after)
				}
			}
		})
	}
}
