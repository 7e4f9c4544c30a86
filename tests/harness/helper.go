package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binaries double as the TCP peers of traffic tests, so the tests need
// no outside tools: run with HelperEnv=serve they listen and tell each client the
// address they saw it come from (what NAT did to it); with HelperEnv=dial they
// connect and print that answer.
const (
	HelperEnv     = "NETLAB_TEST_HELPER"
	helperAddrEnv = "NETLAB_TEST_HELPER_ADDR"
)

// runHelper runs the helper mode named by HelperEnv, if any, and exits.
func runHelper() {
	addr := os.Getenv(helperAddrEnv)
	switch os.Getenv(HelperEnv) {
	case "":
		return
	case "serve":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("listening")
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(1)
			}
			fmt.Fprintf(c, "you are %s\n", c.RemoteAddr())
			c.Close()
		}
	case "dial":
		// Namespaces on one machine answer in microseconds: a second is plenty,
		// and blocked connections (dropped SYNs) wait it out.
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Print(line)
		os.Exit(0)
	}
	fmt.Println("unknown helper", os.Getenv(HelperEnv))
	os.Exit(2)
}

// Serve starts a TCP server inside the namespace at nsPath, listening on addr;
// it is stopped (by PID) when the test ends.
func Serve(t testing.TB, nsPath, addr string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+nsPath, "--", os.Args[0])
	cmd.Env = append(os.Environ(), HelperEnv+"=serve", helperAddrEnv+"="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("server on %s: %q %v", addr, line, err)
	}
}

// Dial connects from the namespace at nsPath to addr and returns the address the
// server saw (its "you are" answer), or an error when the connection fails.
func Dial(nsPath, addr string) (string, error) {
	cmd := exec.Command("nsenter", "--net="+nsPath, "--", os.Args[0])
	cmd.Env = append(os.Environ(), HelperEnv+"=dial", helperAddrEnv+"="+addr)
	out, err := cmd.Output()
	text := strings.TrimSpace(string(out))
	if err != nil {
		return "", fmt.Errorf("dial %s: %v: %s", addr, err, text)
	}
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(text, "you are "))
	return host, nil
}
