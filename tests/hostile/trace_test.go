package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"netlab/reconcile"
	"netlab/tests/harness"
)

const (
	dockerBridge      = "../../labs/docker-bridge.yaml"
	dockerUserNetwork = "../../labs/docker-user-network.yaml"
	traceSchema       = "../../docs/trace.schema.json"
)

// traceJSON runs `netlab trace ARGS -o json`, checks its output against the
// documented schema, and decodes it.
func traceJSON(t *testing.T, sb *harness.Sandbox, args ...string) *reconcile.Trace {
	t.Helper()
	out := sb.OK(append(append([]string{"netlab", "trace"}, args...), "-o", "json")...)
	validateTrace(t, out)
	var tr reconcile.Trace
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatalf("decode trace: %v\n%s", err, out)
	}
	return &tr
}

func validateTrace(t *testing.T, out string) {
	t.Helper()
	data, err := os.ReadFile(traceSchema)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", traceSchema, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("trace.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("trace.schema.json")
	if err != nil {
		t.Fatalf("compile %s: %v", traceSchema, err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("trace output is not JSON: %v\n%s", err, out)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("trace output does not follow %s: %v\n%s", traceSchema, err, out)
	}
}

func namespaces(hops []reconcile.TraceHop) []string {
	var out []string
	for _, h := range hops {
		out = append(out, h.Namespace)
	}
	return out
}

// noTraceLeft fails when a trace table or record is anywhere in the sandbox:
// the host and every namespace of the lab.
func noTraceLeft(t *testing.T, sb *harness.Sandbox, lab string, nss ...string) {
	t.Helper()
	for _, ns := range append([]string{""}, nss...) {
		args := []string{"nft", "list", "tables"}
		if ns != "" {
			args = append([]string{"ip", "netns", "exec", ns}, args...)
		}
		if out := sb.OK(args...); strings.Contains(out, "netlab_trace") {
			t.Errorf("a trace table is left in %q:\n%s", ns, out)
		}
	}
	if out := sb.OK("sh", "-c", "ls /run/netlab/"+lab); strings.Contains(out, "trace") {
		t.Errorf("the trace record is left: %s", out)
	}
}

// TestTracePublishedPortFromTheLAN: a probe from lan to the host's published
// port is followed through lan, the host (with the DNAT to web) and web, with
// the source web saw and the reply's way back; the JSON follows the documented
// schema; nothing of the trace is left.
func TestTracePublishedPortFromTheLAN(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", dockerBridge)
	tr := traceJSON(t, sb, "lan", "192.0.2.1:8000")
	if got := strings.Join(namespaces(tr.Path), " "); got != "lan host web" {
		t.Errorf("path = %q, want lan host web", got)
	}
	if tr.Verdict != reconcile.VerdictDelivered || tr.Far == nil || tr.Far.Namespace != "web" || !strings.HasPrefix(tr.Far.Source, "192.0.2.2:") || tr.Far.Dest != "172.17.0.2:80" {
		t.Errorf("verdict %q, delivered %+v; want delivered to web 172.17.0.2:80 from 192.0.2.2", tr.Verdict, tr.Far)
	}
	var dnat *reconcile.TraceNAT
	for _, h := range tr.Path {
		for i, n := range h.NAT {
			if n.Kind == "dnat" && h.Namespace == "host" {
				dnat = &h.NAT[i]
			}
		}
	}
	if dnat == nil || dnat.Before != "192.0.2.1:8000" || dnat.After != "172.17.0.2:80" || !strings.Contains(dnat.Rule, "published tcp ports") {
		t.Errorf("host's DNAT = %+v, want 192.0.2.1:8000 -> 172.17.0.2:80 by the published-ports rule", dnat)
	}
	if got := strings.Join(namespaces(tr.Reply), " "); got != "web host lan" {
		t.Errorf("reply path = %q, want web host lan", got)
	}
	text := sb.OK("netlab", "trace", "lan", "192.0.2.1:8000")
	for _, want := range []string{"lan (out eth0)", "host (in lan0, out docker0)", "dnat        destination 192.0.2.1:8000 -> 172.17.0.2:80", "web (in eth0)", "web saw the source 192.0.2.2:"} {
		if !strings.Contains(text, want) {
			t.Errorf("text trace lacks %q:\n%s", want, text)
		}
	}
	noTraceLeft(t, sb, "docker-bridge", "lan", "web", "c2")
}

// TestTraceUnpublishedPortIsDropped: web's port 81 is not published: the
// probe from lan is dropped in the host's forward chain, by netlab's rule,
// and the trace says so.
func TestTraceUnpublishedPortIsDropped(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", dockerBridge)
	tr := traceJSON(t, sb, "lan", "172.17.0.2:81")
	d := tr.Drop
	if tr.Verdict != reconcile.VerdictDropped || d == nil || d.Namespace != "host" || d.Hook != "forward" || d.Table != "netlab-docker-bridge" ||
		!strings.Contains(d.Rule, `oifname "docker0" counter drop`) || d.Owner != "netlab, lab docker-bridge" {
		t.Errorf("verdict %q, dropped by %+v; want the host's forward drop rule of netlab's table", tr.Verdict, d)
	}
	noTraceLeft(t, sb, "docker-bridge", "lan", "web", "c2")
}

// TestTraceIsolationAndForeignRules: between isolated bridges the trace names
// the isolation rule; a rule in a table that is not netlab's (a user's) is
// named as such, with its text.
func TestTraceIsolationAndForeignRules(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", dockerUserNetwork)
	tr := traceJSON(t, sb, "c3", "172.17.0.2")
	if d := tr.Drop; tr.Verdict != reconcile.VerdictDropped || d == nil || !strings.Contains(d.Rule, "isolated from docker0") {
		t.Errorf("verdict %q, dropped by %+v; want the isolation rule", tr.Verdict, d)
	}
	sb.OK("nft", "add", "table", "ip", "mine")
	sb.OK("nft", "add", "chain", "ip", "mine", "guard", "{ type filter hook forward priority -10; policy accept; }")
	sb.OK("nft", "add", "rule", "ip", "mine", "guard", "ip", "daddr", "192.0.2.2", "counter", "drop")
	tr = traceJSON(t, sb, "c3", "lan")
	if d := tr.Drop; tr.Verdict != reconcile.VerdictDropped || d == nil || d.Table != "mine" || d.Family != "ip" || d.Owner != "not netlab's" || d.Rule != "ip daddr 192.0.2.2 counter drop" {
		t.Errorf("verdict %q, dropped by %+v; want the user's rule of table ip mine, not netlab's", tr.Verdict, d)
	}
	sb.OK("nft", "delete", "table", "ip", "mine")
	tr = traceJSON(t, sb, "c3", "lan")
	if tr.Verdict != reconcile.VerdictDelivered || tr.Far.Source != "192.0.2.1" {
		t.Errorf("verdict %q, delivered %+v; want delivered, masqueraded as 192.0.2.1", tr.Verdict, tr.Far)
	}
	noTraceLeft(t, sb, "docker-user-network", "c3", "c4", "web", "c2", "lan")
}

// TestTraceNoRoute: a destination no route leads to is "no route", in the
// namespace that has none.
func TestTraceNoRoute(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", dockerBridge)
	tr := traceJSON(t, sb, "lan", "203.0.113.9")
	if tr.Verdict != reconcile.VerdictNoRoute || tr.At != "lan" {
		t.Errorf("verdict %q at %q, want no route at lan: %s", tr.Verdict, tr.At, tr.Detail)
	}
}

// runningTrace starts a trace that waits long for its answer and returns once
// its table is in the host, with the PID of netlab itself (nsenter's child).
func runningTrace(t *testing.T, sb *harness.Sandbox, args ...string) (pid int, wait func()) {
	t.Helper()
	cmd := sb.Command(append([]string{"netlab", "trace", "--wait", "60s"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(sb.OK("nft", "list", "tables"), "netlab_trace") {
		if time.Now().After(deadline) {
			t.Fatal("the trace table never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	pid, err = strconv.Atoi(strings.Fields(string(children))[0])
	if err != nil {
		t.Fatalf("find netlab's PID: %q", children)
	}
	return pid, func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("netlab trace did not end")
		}
	}
}

// TestTraceLeftoversAfterSIGKILL: a trace killed outright leaves its tables;
// the next up removes them (in the host and the lab's namespaces), and so does
// a down; Ctrl-C (SIGINT) removes them at once.
func TestTraceLeftoversAfterSIGKILL(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", dockerBridge)

	pid, wait := runningTrace(t, sb, "lan", "172.17.0.2:81")
	syscall.Kill(pid, syscall.SIGINT)
	wait()
	noTraceLeft(t, sb, "docker-bridge", "lan", "web", "c2")

	for _, next := range []string{"up", "down"} {
		pid, wait = runningTrace(t, sb, "lan", "172.17.0.2:81")
		syscall.Kill(pid, syscall.SIGKILL)
		wait()
		if !strings.Contains(sb.OK("ip", "netns", "exec", "lan", "nft", "list", "tables"), "netlab_trace") {
			t.Fatal("a killed trace left no table: the test proves nothing")
		}
		sb.OK("netlab", next, dockerBridge)
		if next == "up" {
			noTraceLeft(t, sb, "docker-bridge", "lan", "web", "c2")
		} else if out := sb.OK("nft", "list", "tables"); strings.Contains(out, "netlab_trace") {
			t.Errorf("down left the trace table in the host:\n%s", out)
		}
	}
}

// TestCapturePing: a capture on lan's interface written to a pcap holds the
// ICMP echo requests of a ping, as gopacket reads them back; printed, a packet
// is one tcpdump-like line; nothing is left running.
func TestCapturePing(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", dockerBridge)
	file := t.TempDir() + "/lan.pcap"
	capture := func(args ...string) (*bytes.Buffer, func()) {
		cmd := sb.Command(append([]string{"netlab", "capture"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(errb.String(), "capturing"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("capture did not start: %s", errb.String())
			}
		}
		return &out, func() {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("capture: %v\n%s", err, errb.String())
			}
		}
	}
	_, wait := capture("lan:eth0", "-w", file, "-c", "2", "--filter", "icmp and dst host 192.0.2.1")
	sb.OK("ip", "netns", "exec", "lan", "ping", "-c", "2", "-i", "0.2", "192.0.2.1")
	wait()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if requests := echoRequests(t, f); requests != 2 {
		t.Errorf("the pcap holds %d ICMP echo requests, want 2", requests)
	}
	if st, err := f.Stat(); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the pcap file: %v, mode %v; want root's alone", err, st.Mode())
	}

	// -w -: the pcap on standard output, for tcpdump -r -.
	out, wait := capture("lan:eth0", "-w", "-", "-c", "1", "--filter", "icmp and dst host 192.0.2.1")
	sb.OK("ip", "netns", "exec", "lan", "ping", "-c", "1", "192.0.2.1")
	wait()
	if requests := echoRequests(t, out); requests != 1 {
		t.Errorf("the pcap written to standard output holds %d ICMP echo requests, want 1", requests)
	}

	out, wait = capture("host:docker0", "-c", "1", "--filter", "icmp")
	sb.OK("ip", "netns", "exec", "c2", "ping", "-c", "1", "172.17.0.2")
	wait()
	if !strings.Contains(out.String(), "172.17.0.3 > 172.17.0.2: ICMP echo request") {
		t.Errorf("printed capture = %q, want a tcpdump-like line of the echo request", out.String())
	}
}

// echoRequests counts the ICMP echo requests of a pcap.
func echoRequests(t *testing.T, f io.Reader) int {
	t.Helper()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	requests := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		if ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && ic.TypeCode.Type() == layers.ICMPv4TypeEchoRequest {
			requests++
		}
	}
	return requests
}

// TestFailedCheckHintsTrace: netlab test prints, for a check that failed, the
// netlab trace with the same source and target.
func TestFailedCheckHintsTrace(t *testing.T) {
	sb := harness.NewSandbox(t)
	data, err := os.ReadFile("../../labs/docker-bridge-lowlevel.yaml") // its check list has the line replaced below
	if err != nil {
		t.Fatal(err)
	}
	lab := strings.Replace(string(data), `- {from: c2, tcp: "172.17.0.2:81"}`, `- {from: lan, http: "http://172.17.0.2:81/"}`, 1)
	path := writeLab(t, "docker-bridge.yaml", lab)
	sb.OK("netlab", "up", path)
	res := sb.Fails("netlab", "test", path)
	if want := "netlab trace --lab docker-bridge lan 172.17.0.2:81"; !strings.Contains(res.Stderr, want) {
		t.Errorf("netlab test's stderr lacks %q:\n%s", want, res.Stderr)
	}
}

// TestTraceWaitsForTheLockHoldingNoNamespace: a trace that waits for the
// lab's lock (an up or down runs) holds no handle on the lab's namespaces
// meanwhile: one would keep a namespace that run deletes alive, with the host
// ends of its veths, and fail that run. It reads the lab once it has the lock.
func TestTraceWaitsForTheLockHoldingNoNamespace(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", dockerBridge)
	out := sb.OK("sh", "-c", `(flock /run/netlab/docker-bridge.lock sleep 3 >/dev/null 2>&1 &) && sleep 0.3
netlab trace lan 192.0.2.1:8000 >/dev/null 2>/run/trace-err & p=$!
own=$(readlink /proc/self/ns/net); sleep 1
echo "held=$(ls -l /proc/$p/fd | grep -o -e '-> /run/netns/.*' -e 'net:\[[0-9]*\]' | grep -v -F "$own" | wc -l)"
wait $p; echo "code=$?"; cat /run/trace-err`)
	if !strings.HasPrefix(out, "held=0\ncode=0\n") {
		t.Errorf("a trace waiting for the lock: want no namespace held, then a trace:\n%s", out)
	}
	noTraceLeft(t, sb, "docker-bridge", "lan", "web", "c2")
}
