package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// findMininet returns a python3 that imports mininet (the one on PATH, or the
// system's, where Debian's package installs it), or "".
func findMininet() string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import mininet.net, mininet.nodelib").Run() == nil {
			return py
		}
	}
	return ""
}

// mininetScript builds the same star with Mininet's Python API: Linux bridges
// (brctl), no controller, hosts with an address and a default route, each
// bridge with the gateway's address, and then stops it. It runs inside the
// bench's sandbox only. Mininet's fixLimits raises machine-wide sysctls
// (fs.file-max, kernel.pty.max, net.core.*mem_max): it is disabled here.
const mininetScript = `import sys, time, json
import mininet.net, mininet.util
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.log import setLogLevel

mininet.net.fixLimits = lambda: None
mininet.util.fixLimits = lambda: None
setLogLevel('error')

n = int(sys.argv[1])
start = time.monotonic()
net = Mininet(topo=None, switch=LinuxBridge, controller=None, build=False, autoStaticArp=False)
switches = [net.addSwitch('s%d' % (b + 1)) for b in range((n + 999) // 1000)]
for i in range(n):
    b, j = i // 1000, i % 1000 + 2
    h = net.addHost('h%d' % (i + 1), ip='10.%d.%d.%d/16' % (b, j // 256, j % 256),
                    defaultRoute='via 10.%d.0.1' % b)
    net.addLink(h, switches[b])
net.build()
net.start()
for b, s in enumerate(switches):
    s.cmd('ip addr add 10.%d.0.1/16 dev %s' % (b, s.name))
up = time.monotonic() - start
start = time.monotonic()
net.stop()
down = time.monotonic() - start
print(json.dumps({'up': up, 'down': down}))
`

// mininet builds and stops the star with Mininet and returns both times.
func mininet(python, dir string, n int) (up, down time.Duration) {
	fmt.Fprintf(os.Stderr, "  Mininet, N=%d ...\n", n)
	path := filepath.Join(dir, "mininet_star.py")
	os.WriteFile(path, []byte(mininetScript), 0o644)
	cmd := exec.Command(python, path, strconv.Itoa(n))
	out, err := cmd.Output()
	if err != nil {
		msg := string(out)
		if ee, ok := err.(*exec.ExitError); ok {
			msg += string(ee.Stderr)
		}
		fail("mininet: %v\n%s", err, tail(msg))
	}
	var t struct{ Up, Down float64 }
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		json.Unmarshal(sc.Bytes(), &t)
	}
	if t.Up == 0 {
		fail("mininet: no timing in its output:\n%s", tail(string(out)))
	}
	return time.Duration(t.Up * float64(time.Second)), time.Duration(t.Down * float64(time.Second))
}
