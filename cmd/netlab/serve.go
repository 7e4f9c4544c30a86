package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"netlab/reconcile/kernel"
	"netlab/reconcile/probe"
)

func (a *app) serveCmd() *cobra.Command {
	var httpPort, echoPort int
	var body string
	var more extraServers
	cmd := &cobra.Command{
		Use:   "serve (--http PORT [--body TEXT] | --tcp-echo PORT | --dns PORT [--name NAME=ADDR]... [--forward] | --proxy [IP:]PORT/PROTO --to ADDR:PORT)",
		Short: "Run a small server in the current namespace (what serve: in a lab runs)",
		Long: `Run a small built-in server on every address of the current network namespace,
until stopped: an HTTP server that answers every request with TEXT (and says in
an X-Netlab-Peer header which address it saw the client come from), or a TCP
echo server; or Docker's embedded DNS server on 127.0.0.11:PORT (serve: dns),
or the userland proxy of a published port (a bridge's userland-proxy: true).
Labs use it through serve:, so they need no python or nginx.

  netlab exec web -- netlab serve --http 80 --body "Hello World"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if run, err := more.run(cmd, a, httpPort != 0 || echoPort != 0); run || err != nil {
				return err
			}
			switch {
			case (httpPort == 0) == (echoPort == 0):
				return errors.New("serve needs one of --http PORT or --tcp-echo PORT")
			case httpPort != 0:
				return probe.Serve(cmd.Context(), "http", httpPort, body, func() {
					fmt.Fprintf(a.Err, "netlab serve: http on port %d\n", httpPort)
				})
			}
			return probe.Serve(cmd.Context(), "tcp-echo", echoPort, "", func() {
				fmt.Fprintf(a.Err, "netlab serve: tcp echo on port %d\n", echoPort)
			})
		},
	}
	cmd.Flags().IntVar(&httpPort, "http", 0, "serve HTTP on this port")
	cmd.Flags().StringVar(&body, "body", "Hello World", "the HTTP response body")
	cmd.Flags().IntVar(&echoPort, "tcp-echo", 0, "echo TCP on this port")
	more.flags(cmd)
	return cmd
}

// nsexecCmd is the hidden helper behind `exec` and `run:` processes: see kernel.NsExec.
func (a *app) nsexecCmd() *cobra.Command {
	var netnsPath, etcDir, utsPath string
	var goAhead int
	cmd := &cobra.Command{
		Use:    "__nsexec --netns PATH --etc DIR [--go-ahead FD] -- CMD...",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			if err := kernel.AwaitGoAhead(goAhead); err != nil {
				return err
			}
			if utsPath != "" {
				if err := kernel.EnterUTS(utsPath); err != nil {
					return err
				}
			}
			// netlab's own servers run here, in this process, once it is inside the
			// namespace: no second program to execute, so the process is the same,
			// marked, from its start to its end.
			if self, err := os.Executable(); err == nil && len(args) > 1 && args[0] == self && args[1] == "serve" {
				if dialsOut(args) {
					// A server that makes sockets after it starts (a proxy's
					// connections, the DNS server's forwarded queries) must be in
					// the namespace on every thread: this process executes itself
					// again once inside, as the one thread that is.
					return nsExecSelf(netnsPath, etcDir, args)
				}
				if err := kernel.NsEnter(netnsPath, etcDir); err != nil {
					return err
				}
				cmd.Root().SetArgs(args[1:])
				return cmd.Root().ExecuteContext(cmd.Context())
			}
			return kernel.NsExec(netnsPath, etcDir, args)
		},
	}
	cmd.Flags().StringVar(&netnsPath, "netns", "", "the namespace file")
	cmd.Flags().StringVar(&etcDir, "etc", "", "the directory of files to mount over /etc")
	cmd.Flags().StringVar(&utsPath, "uts", "", "the UTS namespace file to enter (the namespace's hostname)")
	cmd.Flags().IntVar(&goAhead, "go-ahead", 0, "a pipe to read one byte from before anything else (0: none)")
	cmd.Flags().SetInterspersed(false)
	return cmd
}
