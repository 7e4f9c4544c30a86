package probe

// The throughput check: netlab's own TCP sender in one namespace and a sink it
// starts (a listening socket made inside the target) and stops, for about two
// seconds: what Mininet's iperf does, with no iperf on the machine. The sink
// counts what arrives from the first byte for Duration, then closes, which
// stops the sender: data still queued in socket buffers is not counted, so the
// rate is what the path carried.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Duration is how long a throughput check measures.
var Duration = 2 * time.Second

// runThroughput runs the throughput checks of checks, one after another.
func runThroughput(ctx context.Context, checks []Check, enter Enter, results []Result) {
	for i, c := range checks {
		if c.Kind == "throughput" {
			results[i] = runRate(ctx, c, recognised(enter))
		}
	}
}

func runRate(ctx context.Context, c Check, enter Enter) Result {
	r := Result{Check: c}
	rate, err := measure(ctx, c, enter)
	var notEntered *enterError
	switch {
	case errors.As(err, &notEntered):
		r.NotRun, r.Detail = true, notEntered.Error()
		return r
	case err != nil:
		r.Detail = short(err)
		return r
	}
	r.Rate = rate
	r.Detail = FormatRate(rate)
	switch {
	case c.MinRate > 0 && rate < float64(c.MinRate):
		r.Detail += ", less than " + FormatRate(float64(c.MinRate))
	case c.MaxRate > 0 && rate > float64(c.MaxRate):
		r.Detail += ", more than " + FormatRate(float64(c.MaxRate))
	default:
		r.Pass = true
		if c.MinRate > 0 || c.MaxRate > 0 {
			r.Detail += " (want " + bounds(c.MinRate, c.MaxRate) + ")"
		}
	}
	return r
}

func bounds(lo, hi uint64) string {
	switch {
	case lo > 0 && hi > 0:
		return FormatRate(float64(lo)) + " to " + FormatRate(float64(hi))
	case lo > 0:
		return "at least " + FormatRate(float64(lo))
	}
	return "at most " + FormatRate(float64(hi))
}

// FormatRate writes bits per second for a person: 9.87 Mbit/s.
func FormatRate(bits float64) string {
	for _, u := range []struct {
		name string
		n    float64
	}{{"Gbit/s", 1e9}, {"Mbit/s", 1e6}, {"kbit/s", 1e3}} {
		if bits >= u.n {
			return fmt.Sprintf("%.3g %s", bits/u.n, u.name)
		}
	}
	return fmt.Sprintf("%.0f bit/s", bits)
}

// measure sends from c.From to a sink in c.Sink and returns the rate the sink
// received at, in bits per second.
func measure(ctx context.Context, c Check, enter Enter) (float64, error) {
	var l net.Listener
	if err := enter(c.Sink, func() (err error) { l, err = net.Listen("tcp", ":0"); return err }); err != nil {
		return 0, err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	done := make(chan sinkResult, 1)
	go func() { done <- receive(l) }()
	target := net.JoinHostPort(c.Target, port)
	conn, err := dial(ctx, c.From, target, enter)
	if err != nil {
		return 0, err
	}
	sendErr := make(chan error, 1)
	go func() {
		defer conn.Close()
		chunk := make([]byte, 64<<10)
		stop := time.Now().Add(Timeout + 2*Duration) // the sink ends it long before
		conn.SetWriteDeadline(stop)
		for time.Now().Before(stop) && ctx.Err() == nil {
			if _, err := conn.Write(chunk); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- ctx.Err()
	}()
	var res sinkResult
	select {
	case res = <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(2*Timeout + 2*Duration):
		// The sender's connection went elsewhere (a DNAT of every port) and
		// the sink was never reached: it would wait for ever.
		res.err = fmt.Errorf("the sink in %s received no connection", c.Sink)
	}
	l.Close()
	conn.Close() // the sink has closed; the sender stops
	<-sendErr
	if res.err != nil {
		return 0, res.err
	}
	return float64(res.bytes*8) / res.elapsed.Seconds(), nil
}

// sinkResult is what the sink of a throughput check received.
type sinkResult struct {
	bytes   int64
	elapsed time.Duration
	err     error
}

// receive is the sink: it takes one connection and counts what arrives in
// Duration from its first byte.
func receive(l net.Listener) sinkResult {
	conn, err := l.Accept()
	if err != nil {
		return sinkResult{err: err}
	}
	defer conn.Close()
	buf := make([]byte, 256<<10)
	// The first byte starts the clock.
	conn.SetReadDeadline(time.Now().Add(Timeout + Duration))
	n, err := conn.Read(buf)
	if err != nil {
		return sinkResult{err: fmt.Errorf("nothing arrived: %w", err)}
	}
	start := time.Now()
	end := start.Add(Duration)
	var total int64
	conn.SetReadDeadline(end)
	for {
		n, err = conn.Read(buf)
		total += int64(n)
		if err != nil {
			break
		}
	}
	if elapsed := time.Since(start); elapsed < Duration*9/10 {
		return sinkResult{err: fmt.Errorf("the sender stopped after %s: %w", elapsed.Round(time.Millisecond), err)}
	}
	return sinkResult{bytes: total, elapsed: Duration}
}
