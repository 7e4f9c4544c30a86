package packet

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// frameOf builds an Ethernet/IPv4/TCP frame.
func frameOf(t *testing.T, src, dst string, sport, dport uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: parseIP(src), DstIP: parseIP(dst)}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 100}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFilter(t *testing.T) {
	f := frameOf(t, "192.0.2.2", "172.17.0.2", 40000, 80)
	for _, c := range []struct {
		expr string
		want bool
	}{
		{"", true},
		{"tcp", true},
		{"udp", false},
		{"tcp port 80", true},
		{"tcp and dst port 80", true},
		{"src port 80", false},
		{"host 192.0.2.2 and not icmp", true},
		{"src host 172.17.0.2", false},
		{"net 172.17.0.0/16", true},
		{"icmp or (tcp and port 81)", false},
		{"! tcp", false},
	} {
		filter, err := Compile(c.expr)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.expr, err)
		}
		if got := filter.Match(f); got != c.want {
			t.Errorf("%q matches = %v, want %v", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{"port", "host nothing", "tcp and", "(tcp", "vlan 3"} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("Compile(%q) accepted", bad)
		}
	}
}

func TestLine(t *testing.T) {
	got := Line(frameOf(t, "192.0.2.2", "172.17.0.2", 40000, 80), gopacket.CaptureInfo{Length: 54})
	want := "00:00:00.000000 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 54: 192.0.2.2.40000 > 172.17.0.2.80: Flags [S], seq 0, win 100, length 0"
	if got[len("00:00:00.000000"):] != want[len("00:00:00.000000"):] {
		t.Errorf("Line =\n%s\nwant\n%s", got, want)
	}
}
