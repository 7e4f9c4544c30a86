package topology

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the .err goldens of testdata/invalid-*.yaml")

func TestValidLabs(t *testing.T) {
	files, err := filepath.Glob("testdata/valid-*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least 4 valid labs, got %d (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			lab, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if lab.Host == nil || lab.Host.Name != HostName {
				t.Errorf("Host = %+v, want the host namespace", lab.Host)
			}
			for _, l := range lab.Links {
				for _, e := range l.Ends {
					if e.Namespace == "" || e.Interface == "" {
						t.Errorf("link end %q left unresolved: %+v", e.Text, e)
					}
				}
			}
		})
	}
}

// TestResolution spot-checks what Validate fills in: link ends, generated port
// names and route devices.
func TestResolution(t *testing.T) {
	lab, err := Load("testdata/valid-docker-bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type end struct{ Text, Namespace, Interface, Bridge string }
	var got [][2]end
	for _, l := range lab.Links {
		var pair [2]end
		for i, e := range l.Ends {
			pair[i] = end{e.Text, e.Namespace, e.Interface, e.Bridge}
		}
		got = append(got, pair)
	}
	want := [][2]end{
		{{"web:eth0", "web", "eth0", ""}, {"docker0", "host", GeneratedPortName("docker-bridge", "web", "eth0"), "docker0"}},
		{{"c2:eth0", "c2", "eth0", ""}, {"docker0:veth-c2", "host", "veth-c2", "docker0"}},
		{{"outside:eth0", "outside", "eth0", ""}, {"host:uplink0", "host", "uplink0", ""}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("link ends (-want +got):\n%s", diff)
	}

	web := lab.Namespaces[0]
	type route struct {
		To     string
		Via    string
		Dev    string
		Metric int
	}
	var routes []route
	for _, r := range web.Routes {
		routes = append(routes, route{r.To.String(), r.Via.String(), r.Dev, r.Metric})
	}
	wantRoutes := []route{
		{"0.0.0.0/0", "172.17.0.1", "eth0", 0},
		{"10.9.0.0/16", "172.17.0.1", "eth0", 10},
	}
	if diff := cmp.Diff(wantRoutes, routes); diff != "" {
		t.Errorf("web routes (-want +got):\n%s", diff)
	}
	if b := lab.Bridges[0]; b.Namespace != HostName || !b.Masquerade || b.ICC == nil || !*b.ICC || !b.Isolated || b.MTU != 1500 || b.SnoopingOff {
		t.Errorf("docker0 = %+v", b)
	}
	if p := web.Publish[0]; p.HostPort != 8000 || p.Port != 80 || p.Proto != "tcp" || p.HostIP.IsValid() {
		t.Errorf("publish = %+v", p)
	}
	if c := lab.Checks[3]; c.From != "web" || c.Kind != "ping" || c.ExpectSource != netip.MustParseAddr("203.0.113.2") {
		t.Errorf("check = %+v", c)
	}

	// Two bridges joined by a veth: each port is named after the other bridge.
	lab, err = Load("testdata/valid-ipv6.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := lab.Links[2]
	if a, b := l.Ends[0].Interface, l.Ends[1].Interface; a != GeneratedPortName("v6", "host", "br7") || b != GeneratedPortName("v6", "host", "br6") {
		t.Errorf("bridge-to-bridge ports = %s, %s", a, b)
	}
	if got := lab.KernelName("h1"); got != "lab1-h1" {
		t.Errorf("KernelName(h1) = %q", got)
	}
	h1 := lab.Namespaces[0]
	var devs []string
	for _, r := range h1.Routes {
		devs = append(devs, r.To.String()+" dev "+r.Dev)
	}
	wantDevs := []string{"::/0 dev eth0", "0.0.0.0/0 dev eth0", "2001:db8:99::/48 dev eth0"}
	if diff := cmp.Diff(wantDevs, devs); diff != "" {
		t.Errorf("h1 route devices (-want +got):\n%s", diff)
	}
}

// TestRouteDevFromBridge: in the host, a gateway on a bridge's subnet resolves to the bridge.
func TestRouteDevFromBridge(t *testing.T) {
	src := `
name: t
host:
  routes: [10.9.0.0/16 via 172.17.0.2]
bridges:
  docker0: {addresses: [172.17.0.1/16]}
namespaces:
  web:
    interfaces: {eth0: {addresses: [172.17.0.2/16]}}
links: [[web:eth0, docker0]]
`
	lab, err := Parse([]byte(src), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := lab.Host.Routes[0].Dev; got != "docker0" {
		t.Errorf("Dev = %q, want docker0", got)
	}
}

// TestInvalidLabs compares what Load reports for each testdata/invalid-*.yaml with
// its .err golden. Run `go test ./topology -update` to rewrite the goldens, then
// read every one: each message must make sense to a student.
func TestInvalidLabs(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil || len(files) < 30 {
		t.Fatalf("want at least 30 invalid labs, got %d (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := Load(file)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load = %v, want Errors", err)
			}
			got := errs.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./topology -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Load(%s) (-want +got):\n%s", file, diff)
			}
		})
	}
}

// TestErrorsSorted: whatever order checks find problems in, they come out by line
// then column.
func TestErrorsSorted(t *testing.T) {
	_, err := Load("testdata/invalid-many.yaml")
	var errs Errors
	if !errors.As(err, &errs) || len(errs) < 4 {
		t.Fatalf("want at least 4 errors, got %v", err)
	}
	for i := 1; i < len(errs); i++ {
		a, b := errs[i-1].Pos, errs[i].Pos
		if a.Line > b.Line || a.Line == b.Line && a.Col > b.Col {
			t.Errorf("errors %d and %d out of order: %v before %v", i-1, i, a, b)
		}
	}

	unsorted := Errors{
		{File: "f", Pos: Pos{3, 1}, Msg: "c"},
		{File: "f", Pos: Pos{1, 9}, Msg: "b"},
		{File: "f", Pos: Pos{1, 2}, Msg: "a"},
		{File: "f", Pos: Pos{3, 1}, Msg: "c"},
	}
	want := "f:1:2: a\nf:1:9: b\nf:3:1: c"
	if diff := cmp.Diff(want, unsorted.sorted().Error()); diff != "" {
		t.Errorf("sorted (-want +got):\n%s", diff)
	}
}

// TestParseAndValidateAlone: Parse and Validate each return only their own errors.
func TestParseAndValidateAlone(t *testing.T) {
	src := "name: t\nnamespaces:\n  a:\n    interfaces:\n      eth0: {addresses: [10.0.0.300/24]}\nlinks: [[a:eth0, b:eth0]]\n"
	lab, err := Parse([]byte(src), "t.yaml")
	want := `t.yaml:5:26: interface a:eth0: invalid address "10.0.0.300/24" (want ADDRESS/PREFIXLEN, e.g. 172.17.0.2/16)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse = %v, want %s", err, want)
	}
	err = lab.Validate()
	want = `t.yaml:6:18: link "a:eth0 -- b:eth0": unknown namespace "b"`
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
}

// TestBridgeMulticastSnooping: on unless the file says false; a value that is
// not a boolean is an error at its position.
func TestBridgeMulticastSnooping(t *testing.T) {
	lab, err := Parse([]byte("name: t\nbridges:\n  br0: {multicast-snooping: false}\n  br1: {multicast-snooping: true}\n  br2: {}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var off []bool
	for _, b := range lab.Bridges {
		off = append(off, b.SnoopingOff)
	}
	if want := []bool{true, false, false}; !slices.Equal(off, want) {
		t.Errorf("snooping off of br0, br1, br2: %v, want %v", off, want)
	}
	_, err = Parse([]byte("name: t\nbridges:\n  br0: {multicast-snooping: 0}\n"), "t.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:3:29: bridge br0: multicast-snooping: want true or false") {
		t.Errorf("multicast-snooping: 0 = %v, want an error at 3:29", err)
	}
}

func TestTooLarge(t *testing.T) {
	data := []byte("name: big\ndescription: " + strings.Repeat("x", maxFileSize) + "\n")
	lab, err := Parse(data, "big.yaml")
	if lab != nil || err == nil || err.Error() != "big.yaml:1:1: lab file is larger than 4 MiB; a lab is a few kilobytes" {
		t.Errorf("Parse = %v, %v", lab, err)
	}
}

func TestGeneratedPortName(t *testing.T) {
	got := GeneratedPortName("docker-bridge", "web", "eth0")
	if len(got) != 11 || !strings.HasPrefix(got, "veth") || ifnameProblem(got) != "" {
		t.Errorf("GeneratedPortName = %q, want veth and 7 hex digits", got)
	}
	if got != GeneratedPortName("docker-bridge", "web", "eth0") {
		t.Error("GeneratedPortName is not deterministic")
	}
	for _, other := range []string{
		GeneratedPortName("docker-bridge", "web", "eth1"),
		GeneratedPortName("docker-bridge", "c2", "eth0"),
		GeneratedPortName("other-lab", "web", "eth0"),
	} {
		if other == got {
			t.Errorf("GeneratedPortName collides: %s", got)
		}
	}
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		in      string
		want    string // routeText of the result
		wantErr string
	}{
		{in: "default via 172.17.0.1", want: "default via 172.17.0.1"},
		{in: "default via 2001:db8::1", want: "default via 2001:db8::1"},
		{in: "10.9.0.1/16 metric 5 via 172.17.0.1", want: "10.9.0.0/16 via 172.17.0.1 metric 5"},
		{in: "10.9.0.7 dev eth0", want: "10.9.0.7 dev eth0"},
		{in: "0.0.0.0/0 dev wg0", want: "default dev wg0"},
		{in: "default dev eth0", wantErr: "default route needs via"},
		{in: "10.0.0.0/8", wantErr: "a route needs via or dev"},
		{in: "10.0.0.0/8 via 2001:db8::1", wantErr: "gateway 2001:db8::1 is IPv6 but destination 10.0.0.0/8 is IPv4"},
		{in: "10.0.0.0/8 gw 10.0.0.1", wantErr: `unknown word "gw"`},
		{in: "10.0.0.0/8 via 10.0.0.1 via 10.0.0.2", wantErr: `"via" given twice`},
		{in: "10.0.0.0/8 via", wantErr: `"via" needs a value`},
		{in: "10.0.0.0/8 via 10.0.0.1 metric -1", wantErr: `invalid metric "-1"`},
		{in: "10.0.0.0/33 via 10.0.0.1", wantErr: `invalid destination`},
	}
	for _, tt := range tests {
		r, err := parseRoute(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRoute(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("parseRoute(%q): %v", tt.in, err)
		default:
			if diff := cmp.Diff(tt.want, routeText(r)); diff != "" {
				t.Errorf("parseRoute(%q) (-want +got):\n%s", tt.in, diff)
			}
		}
	}
}

func TestParsePublish(t *testing.T) {
	tests := []struct {
		in   string
		want Publish // Text and Pos left out
		bad  bool
	}{
		{in: "8000:80", want: Publish{HostPort: 8000, Port: 80, Proto: "tcp"}},
		{in: "127.0.0.1:8000:80/udp", want: Publish{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8000, Port: 80, Proto: "udp"}},
		{in: "[::1]:8000:80", want: Publish{HostIP: netip.MustParseAddr("::1"), HostPort: 8000, Port: 80, Proto: "tcp"}},
		{in: "80", bad: true},
		{in: "8000:80/sctp", bad: true},
		{in: "0:80", bad: true},
		{in: "8000:65536", bad: true},
		{in: "300.0.0.1:8000:80", bad: true},
		{in: "a:b:c:d", bad: true},
	}
	for _, tt := range tests {
		p, err := parsePublish(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parsePublish(%q) = %+v, want an error", tt.in, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePublish(%q): %v", tt.in, err)
			continue
		}
		p.Text = ""
		if diff := cmp.Diff(tt.want, *p, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("parsePublish(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseDNATTarget(t *testing.T) {
	tests := []struct {
		in   string
		addr string
		port PortRange
		bad  bool
	}{
		{in: "10.0.0.5", addr: "10.0.0.5"},
		{in: "10.0.0.5:80", addr: "10.0.0.5", port: PortRange{80, 80}},
		{in: "10.0.0.5:80-90", addr: "10.0.0.5", port: PortRange{80, 90}},
		{in: "2001:db8::5", addr: "2001:db8::5"},
		{in: "[2001:db8::5]:80", addr: "2001:db8::5", port: PortRange{80, 80}},
		{in: "[2001:db8::5]", addr: "2001:db8::5"},
		{in: "10.0.0.5:90-80", bad: true},
		{in: "10.0.0.5:", bad: true},
		{in: "host:80", bad: true},
		{in: "[2001:db8::5]80", bad: true},
	}
	for _, tt := range tests {
		a, p, err := parseDNATTarget(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseDNATTarget(%q) = %v %v, want an error", tt.in, a, p)
			}
			continue
		}
		if err != nil || a.String() != tt.addr || p != tt.port {
			t.Errorf("parseDNATTarget(%q) = %v %v %v, want %s %v", tt.in, a, p, err, tt.addr, tt.port)
		}
	}
}

func TestParseAddressAndMAC(t *testing.T) {
	good := []string{"172.17.0.2/16", "10.0.0.0/31", "10.0.0.1/32", "2001:db8::/64", "169.254.0.2/16"}
	for _, s := range good {
		if _, err := parseAddress(s); err != nil {
			t.Errorf("parseAddress(%q): %v", s, err)
		}
	}
	bad := []string{"172.17.0.2", "172.17.0.0/16", "172.17.255.255/16", "0.0.0.0/8", "224.0.0.1/4", "127.0.0.2/8", "::1/128", "::ffff:10.0.0.1/104", "10.0.0.1/33"}
	for _, s := range bad {
		if _, err := parseAddress(s); err == nil {
			t.Errorf("parseAddress(%q) succeeded, want an error", s)
		}
	}
	if _, err := parseMAC("02:42:ac:11:00:02"); err != nil {
		t.Errorf("parseMAC: %v", err)
	}
	for _, s := range []string{"01:00:5e:00:00:01", "00:00:00:00:00:00", "02:42:ac:11:00", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"} {
		if _, err := parseMAC(s); err == nil {
			t.Errorf("parseMAC(%q) succeeded, want an error", s)
		}
	}
}

// FuzzParse: no input makes Parse or Validate panic, and every error is positioned
// inside the file. `go test` runs the seeds (every testdata lab); `go test -fuzz
// FuzzParse ./topology` explores further.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lab, notes, errs := parse(data, "f.yaml")
		if lab != nil {
			errs = append(errs, validate(lab, notes)...)
		}
		// YAML breaks lines at \n, \r\n and a lone \r.
		lines := strings.Count(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") + strings.Count(string(data), "\r") - strings.Count(string(data), "\r\n") + 1
		for _, e := range errs {
			if e.Pos.Line < 1 || e.Pos.Col < 1 || e.Pos.Line > lines+1 {
				t.Errorf("error outside the file (%d lines): %v", lines, e)
			}
			if e.Msg == "" {
				t.Errorf("error without a message at %v", e.Pos)
			}
		}
	})
}

// TestHostileInputsAreRefusedFast: every invalid file, a 10 MB file and a file
// with a very long single line are refused with positioned errors, each in well
// under a second (a hostile file must not make validation the attack). The bound
// is loose (2 s, for a loaded CI machine: they take a few ms idle); it catches a
// parser gone quadratic, which takes minutes on these inputs, not a slow machine.
func TestHostileInputsAreRefusedFast(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid-*.yaml")
	dir := t.TempDir()
	big := filepath.Join(dir, "ten-megabytes.yaml")
	os.WriteFile(big, append([]byte("name: big\n# "), bytes.Repeat([]byte("x"), 10<<20)...), 0o644)
	long := filepath.Join(dir, "long-line.yaml")
	os.WriteFile(long, append([]byte("name: "), bytes.Repeat([]byte("a"), 1<<20)...), 0o644)
	for _, f := range append(files, big, long) {
		start := time.Now()
		_, err := Load(f)
		took := time.Since(start)
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Errorf("%s: got %v, want positioned errors", f, err)
			continue
		}
		for _, e := range errs {
			if !strings.HasPrefix(e.Error(), f+":") || strings.ContainsAny(e.Error(), "\x00\n") {
				t.Errorf("%s: error %q is not one positioned line", f, e.Error())
			}
		}
		if took > 2*time.Second {
			t.Errorf("%s: refused in %v, want well under a second", f, took)
		}
	}
	if len(files) < 60 {
		t.Errorf("%d invalid files, want at least 60", len(files))
	}
}

// TestGeneratedPortNamesAtScale: 5000 links over 5 bridges hash two ports alike
// (28 bits); the second is renamed deterministically and the lab validates, with
// every port name unique, and the same names on every run.
func TestGeneratedPortNamesAtScale(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: big\nbridges:\n")
	for k := range 5 {
		fmt.Fprintf(&b, "  br%d: {}\n", k)
	}
	b.WriteString("namespaces:\n")
	for n := range 5000 {
		fmt.Fprintf(&b, "  c%d: {}\n", n)
	}
	b.WriteString("links:\n")
	for n := range 5000 {
		fmt.Fprintf(&b, "  - [c%d:eth0, br%d]\n", n, n%5)
	}
	names := func() []string {
		lab, err := Parse([]byte(b.String()), "big.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := lab.Validate(); err != nil {
			t.Fatal(err)
		}
		var out []string
		seen := map[string]bool{}
		for _, l := range lab.Links {
			name := l.Ends[1].Interface
			if seen[name] {
				t.Errorf("port name %s generated twice", name)
			}
			seen[name] = true
			out = append(out, name)
		}
		return out
	}
	first := names()
	if diff := cmp.Diff(first, names()); diff != "" {
		t.Errorf("names differ between runs (-first +second):\n%s", diff)
	}
	renamed := 0
	for n, name := range first {
		if name != GeneratedPortName("big", fmt.Sprintf("c%d", n), "eth0") {
			renamed++
		}
	}
	if renamed == 0 || renamed > 5 {
		t.Errorf("%d ports have a name other than GeneratedPortName's; want the few that collide", renamed)
	}
}
