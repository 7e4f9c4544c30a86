package topology

// The map form of a link: its two ends and what the link does to the traffic
// that crosses it, as Mininet's TCLink(bw, delay, loss) and tc teach it:
//
//	- {ends: [h4:eth0, s1], rate: 10mbit, burst: 32kb}          # tbf on each end's egress
//	- {ends: [r:a, far:b], delay: 20ms, jitter: 5ms, loss: 1%}  # netem on each end's egress
//	- {ends: [r:b2, x:eth0], state: down, mtu: 9000}
//
// The list form [A, B] stays: it is the map form with no settings.

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Shaping is what a link asks of the queue on each end's egress: a rate (tc's
// tbf) and what netem emulates (delay, loss...). The zero value shapes nothing.
type Shaping struct {
	Rate      uint64        // bits per second; 0: not limited
	Burst     uint64        // bytes the bucket holds; 0: netlab's default (see DefaultBurst)
	Delay     time.Duration // added to every packet
	Jitter    time.Duration // delay varies by up to this much either way
	Loss      float64       // percent of packets dropped
	Duplicate float64       // percent of packets sent twice
	Corrupt   float64       // percent of packets with a flipped bit
	Limit     int           // the queue's length in packets; 0: the default

	// Keys are the shaping keys the file gives, in file order: messages name them
	// ("delay needs the sch_netem kernel module").
	Keys []string
}

// Netem reports whether the shaping needs netem (delay, jitter, loss,
// duplicate or corrupt).
func (s Shaping) Netem() bool {
	return s.Delay > 0 || s.Jitter > 0 || s.Loss > 0 || s.Duplicate > 0 || s.Corrupt > 0
}

// Empty reports whether the link shapes nothing.
func (s Shaping) Empty() bool { return s.Rate == 0 && !s.Netem() }

// NetemKeys are the keys of the file that need netem, in file order.
func (s Shaping) NetemKeys() []string {
	var out []string
	for _, k := range s.Keys {
		switch k {
		case "delay", "jitter", "loss", "duplicate", "corrupt":
			out = append(out, k)
		}
	}
	return out
}

// Limits of the shaping keys.
const (
	MinRate  = 8_000           // bits per second: 1000 bytes a second
	MaxRate  = 100_000_000_000 // 100gbit
	MaxDelay = time.Minute
	MaxLimit = 1_000_000 // packets
	// frameOverhead is what the kernel counts of a frame besides its payload
	// (the Ethernet header), for the least useful burst.
	frameOverhead = 14
)

// DefaultBurst is the bucket netlab gives a rate written without burst: 10 ms
// of traffic at the rate, and at least two full-size frames at the link's MTU
// (0: 1500), so that a frame is never larger than the bucket.
func DefaultBurst(rate uint64, mtu int) uint64 {
	if mtu == 0 {
		mtu = 1500
	}
	return max(rate/8/100, 2*uint64(mtu+frameOverhead))
}

var linkMapKeys = []string{"ends", "rate", "burst", "delay", "jitter", "loss", "duplicate", "corrupt", "limit", "mtu", "state"}

// linkMap reads a link in map form; nil when it could not be read.
func (d *decoder) linkMap(n *yaml.Node) *Link {
	f, good := d.fields(n, "link", linkMapKeys...)
	l := &Link{Pos: pos(n)}
	v := f.val("ends")
	if v == nil {
		d.errorf(n, "link: missing ends: (the two ends, such as ends: [web:eth0, docker0])")
		return nil
	}
	if !d.linkEnds(l, v) {
		good = false
	}
	label := "link"
	if good {
		label = fmt.Sprintf("link %q", l.Ends[0].Text+" -- "+l.Ends[1].Text)
	}
	sh := &l.Shaping
	for _, p := range n.Content {
		// Keys in file order, for messages.
		if k := resolve(p); k.Kind == yaml.ScalarNode && f[k.Value].key == k && k.Value != "ends" && k.Value != "mtu" && k.Value != "state" {
			sh.Keys = append(sh.Keys, k.Value)
		}
	}
	read := func(key string, fn func(*yaml.Node, string) bool) {
		if v := f.val(key); v != nil && !fn(v, label+": "+key) {
			good = false
		}
	}
	read("rate", func(v *yaml.Node, lab string) (ok bool) { sh.Rate, ok = value(d, v, lab, parseRate); return })
	read("burst", func(v *yaml.Node, lab string) (ok bool) { sh.Burst, ok = d.size(v, lab); return })
	read("delay", func(v *yaml.Node, lab string) (ok bool) { sh.Delay, ok = value(d, v, lab, parseDelay); return })
	read("jitter", func(v *yaml.Node, lab string) (ok bool) { sh.Jitter, ok = value(d, v, lab, parseDelay); return })
	read("loss", func(v *yaml.Node, lab string) (ok bool) { sh.Loss, ok = d.percent(v, lab); return })
	read("duplicate", func(v *yaml.Node, lab string) (ok bool) { sh.Duplicate, ok = d.percent(v, lab); return })
	read("corrupt", func(v *yaml.Node, lab string) (ok bool) { sh.Corrupt, ok = d.percent(v, lab); return })
	read("limit", func(v *yaml.Node, lab string) bool {
		n, ok := d.integer(v, lab, 1, MaxLimit)
		sh.Limit = int(n)
		return ok
	})
	read("mtu", func(v *yaml.Node, lab string) bool {
		n, ok := d.integer(v, lab, 68, 65535)
		l.MTU = int(n)
		return ok
	})
	read("state", func(v *yaml.Node, lab string) bool {
		s, ok := d.oneOf(v, lab, "up", "down")
		l.Down = s == "down"
		return ok
	})
	if !good || !d.shapingFits(l, f, label) {
		return nil
	}
	return l
}

// shapingFits checks the map form's keys against each other.
func (d *decoder) shapingFits(l *Link, f fields, label string) bool {
	sh := &l.Shaping
	keyPos := func(k string) *yaml.Node { return f[k].key }
	switch {
	case sh.Jitter > 0 && sh.Delay == 0:
		d.errorf(keyPos("jitter"), "%s: jitter varies the delay, which is not given (add delay:)", label)
		return false
	case sh.Burst > 0 && sh.Rate == 0:
		d.errorf(keyPos("burst"), "%s: burst is the bucket of rate:, which is not given", label)
		return false
	case sh.Limit > 0 && sh.Empty():
		d.errorf(keyPos("limit"), "%s: limit is the length of the queue of rate: or delay:/loss:, and neither is given", label)
		return false
	}
	if sh.Rate > 0 {
		mtu := l.MTU
		if mtu == 0 {
			mtu = 1500
		}
		burst := sh.Burst
		if burst == 0 {
			burst = DefaultBurst(sh.Rate, l.MTU)
		}
		switch {
		case sh.Burst > 0 && sh.Burst < uint64(mtu+frameOverhead):
			d.errorf(f.val("burst"), "%s: burst %s is less than one full-size frame (%d bytes at mtu %d): every such frame would be dropped", label, FormatSize(sh.Burst), mtu+frameOverhead, mtu)
			return false
		case float64(burst)*8/float64(sh.Rate) > 200:
			d.errorf(f.val("burst"), "%s: burst %s is %.0f seconds of traffic at rate %s; at most 200 seconds", label, FormatSize(burst), float64(burst)*8/float64(sh.Rate), FormatRate(sh.Rate))
			return false
		}
	}
	return true
}

// linkEnds reads [END, END] into l.Ends.
func (d *decoder) linkEnds(l *Link, n *yaml.Node) bool {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 {
		got := describe(n)
		if n.Kind == yaml.SequenceNode {
			got = fmt.Sprintf("a list of %d", len(n.Content))
		}
		d.errorf(n, "link: ends: want two ends [END, END], such as [web:eth0, docker0], got %s", got)
		return false
	}
	good := true
	for i, c := range n.Content {
		c = resolve(c)
		s, ok := d.str(c, "link end")
		if ok {
			if err := parseEnd(s); err != nil {
				d.errorf(c, "link: %v", err)
				ok = false
			}
		}
		l.Ends[i] = &End{Pos: pos(c), Text: s}
		good = good && ok
	}
	return good
}

var (
	rateRE    = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)$`)
	sizeRE    = regexp.MustCompile(`^([0-9]+)\s*([A-Za-z]*)$`)
	percentRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*%$`)
)

// rateUnits are tc's: bit is bits per second, bps bytes per second.
var rateUnits = map[string]float64{
	"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9,
}

const rateWant = "want a rate such as 10mbit, 512kbit or 1gbit (bit, kbit, mbit, gbit; bps, kbps, mbps for bytes)"

// parseRate reads a rate as tc writes it ("10mbit") into bits per second, a
// whole number of bytes per second (what the kernel keeps).
func parseRate(s string) (uint64, error) {
	bits, err := parseRateAny(s)
	if err == nil && bits < MinRate {
		return 0, fmt.Errorf("rate %q is less than %s, the least a link is shaped to", s, FormatRate(MinRate))
	}
	return bits, err
}

// parseRateAny is parseRate without the least rate: for what a check expects.
func parseRateAny(s string) (uint64, error) {
	m := rateRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid rate %q (%s)", s, rateWant)
	}
	unit, ok := rateUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("invalid rate %q: unknown unit %q (%s)", s, m[2], rateWant)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || v*unit > MaxRate {
		return 0, fmt.Errorf("rate %q is more than %s", s, FormatRate(MaxRate))
	}
	return uint64(math.Round(v*unit/8)) * 8, nil
}

// sizeUnits are tc's: k and m are 1024 and 1024*1024 bytes.
var sizeUnits = map[string]uint64{
	"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
}

const maxSize = 1 << 30

// size reads a size in bytes: an integer, or a string such as 32kb.
func (d *decoder) size(n *yaml.Node, label string) (uint64, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v, ok := d.integer(n, label, 1, maxSize)
		return uint64(v), ok
	}
	return value(d, n, label, parseSize)
}

func parseSize(s string) (uint64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	want := "want a size such as 32kb, 1500b or 1mb (k and m are 1024 and 1024*1024 bytes)"
	if m == nil {
		return 0, fmt.Errorf("invalid size %q (%s)", s, want)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (%s)", s, m[2], want)
	}
	v, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil || v == 0 || v > maxSize/unit {
		return 0, fmt.Errorf("size %q is out of range (want 1 byte to 1gb)", s)
	}
	return v * unit, nil
}

// percent reads a percentage written with %: 1%, 0.5%.
func (d *decoder) percent(n *yaml.Node, label string) (float64, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		d.errorf(n, "%s: want a percentage such as 1%% or 0.5%%, got %s (write the %% sign: %s%%)", label, describe(n), n.Value)
		return 0, false
	}
	return value(d, n, label, parsePercent)
}

func parsePercent(s string) (float64, error) {
	m := percentRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid percentage %q (want a percentage such as 1%% or 0.5%%)", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || v <= 0 || v > 100 {
		return 0, fmt.Errorf("percentage %q is out of range (want more than 0%% and at most 100%%)", s)
	}
	return v, nil
}

// parseDelay reads a delay such as 20ms: positive, at most MaxDelay, in whole
// microseconds.
func parseDelay(s string) (time.Duration, error) {
	t, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err != nil:
		return 0, fmt.Errorf("invalid duration %q (want a duration such as 20ms, 1.5ms or 100us)", s)
	case t <= 0 || t > MaxDelay:
		return 0, fmt.Errorf("%q is out of range (want more than 0 and at most %s)", s, MaxDelay)
	case t%time.Microsecond != 0:
		return 0, fmt.Errorf("%q is finer than a microsecond, which netem cannot keep", s)
	}
	return t, nil
}

// FormatRate writes bits per second as tc does: 10mbit, 1500kbit, 8bit.
func FormatRate(bits uint64) string {
	for _, u := range []struct {
		name string
		n    uint64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if bits >= u.n && bits%u.n == 0 {
			return strconv.FormatUint(bits/u.n, 10) + u.name
		}
	}
	return strconv.FormatUint(bits, 10) + "bit"
}

// FormatSize writes bytes as tc reads them: 32kb, 1mb, 1514b.
func FormatSize(bytes uint64) string {
	switch {
	case bytes >= 1<<20 && bytes%(1<<20) == 0:
		return strconv.FormatUint(bytes>>20, 10) + "mb"
	case bytes >= 1<<10 && bytes%(1<<10) == 0:
		return strconv.FormatUint(bytes>>10, 10) + "kb"
	}
	return strconv.FormatUint(bytes, 10) + "b"
}

// FormatPercent writes a percentage: 1%, 0.5%.
func FormatPercent(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

// linkSettings checks the map form's mtu against the ends' own settings: an
// `interfaces:` entry with another mtu, or a bridge whose mtu its ports follow.
func (v *validator) linkSettings() {
	for _, l := range v.lab.Links {
		if l.MTU == 0 {
			continue
		}
		label := fmt.Sprintf("link %q", l.Ends[0].Text+" -- "+l.Ends[1].Text)
		for _, e := range l.Ends {
			if e.Bridge != "" {
				if b := v.bridges[e.Bridge]; b != nil && b.MTU != 0 && b.MTU != l.MTU {
					v.errorAt(l.Pos, "%s: mtu %d, but bridge %s has mtu %d, which its ports follow; give one", label, l.MTU, b.Name, b.MTU)
				}
				continue
			}
			dv := v.devices[e.Namespace][e.Interface]
			if dv != nil && dv.iface != nil && dv.iface.MTU != 0 && dv.iface.MTU != l.MTU {
				v.errorAt(l.Pos, "%s: mtu %d, but interface %s:%s sets mtu %d; give one", label, l.MTU, e.Namespace, e.Interface, dv.iface.MTU)
			}
		}
	}
}

// linkNotes describes a link's settings for graphs: "(10mbit, delay 20ms, down)".
func linkNotes(l *Link) string {
	var notes []string
	sh := l.Shaping
	if sh.Rate > 0 {
		notes = append(notes, FormatRate(sh.Rate))
	}
	if sh.Delay > 0 {
		notes = append(notes, "delay "+sh.Delay.String())
	}
	if sh.Loss > 0 {
		notes = append(notes, "loss "+FormatPercent(sh.Loss))
	}
	if l.MTU != 0 {
		notes = append(notes, "mtu "+strconv.Itoa(l.MTU))
	}
	if l.Down {
		notes = append(notes, "down")
	}
	if len(notes) == 0 {
		return ""
	}
	return "(" + strings.Join(notes, ", ") + ")"
}
