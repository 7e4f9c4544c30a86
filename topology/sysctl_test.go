package topology

import "testing"

// TestSysctlValuesCanonical: a value is stored as the kernel prints it back, so
// that the next up compares equal instead of showing "1 -> +1" forever.
func TestSysctlValuesCanonical(t *testing.T) {
	text := "name: s\nnamespaces:\n  web:\n    sysctls:\n" +
		"      net.ipv4.ip_forward: +1\n" +
		"      net.ipv4.ping_group_range: \"0\\t2147483647\"\n" +
		"      net.ipv4.tcp_rmem: \" 4096   0087380x 6291456 \"\n" +
		"      net.core.somaxconn: \"-0\"\n" +
		"      net.ipv4.conf.all.rp_filter: \"00\"\n" +
		"      net.ipv4.ip_local_reserved_ports: \"8080,9148-9150\"\n" +
		"      net.ipv4.tcp_congestion_control: cubic\n"
	lab, err := Parse([]byte(text), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"net.ipv4.ip_forward":              "1",
		"net.ipv4.ping_group_range":        "0 2147483647",
		"net.ipv4.tcp_rmem":                "4096 0087380x 6291456",
		"net.core.somaxconn":               "0",
		"net.ipv4.conf.all.rp_filter":      "0",
		"net.ipv4.ip_local_reserved_ports": "8080,9148-9150",
		"net.ipv4.tcp_congestion_control":  "cubic",
	}
	for _, sc := range lab.Namespaces[0].Sysctls {
		if sc.Value != want[sc.Key] {
			t.Errorf("%s: %q, want %q", sc.Key, sc.Value, want[sc.Key])
		}
	}
}
