package main

import (
	"io"

	"github.com/spf13/cobra"

	"netlab/topology"
)

func (a *app) expandCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "expand FILE|-",
		Short: "Print the low-level lab a Docker-level lab compiles to",
		Long: `Print the equivalent low-level lab of FILE: its docker:, networks: and
containers: sections compiled to the bridges, namespaces and links dockerd would
make (addresses, MACs, hostnames, sysctls, /etc/hosts and resolv.conf), as a lab
file that netlab up accepts. A course can show with it what Docker does
underneath. The file must be valid; its problems are reported as validate does.

  netlab expand labs/docker-bridge.yaml > docker-bridge-lowlevel.yaml`,
		Args: labFileArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readLabBytes(a.In, args[0])
			if err != nil {
				return err
			}
			out, err := topology.Expand(data, args[0])
			if err != nil {
				return err
			}
			_, err = a.Out.Write(out)
			return err
		},
	}
}

// readLabBytes reads a lab file (a regular file only, as topology.Load does),
// or standard input for "-".
func readLabBytes(in io.Reader, file string) ([]byte, error) {
	if file == "-" {
		return topology.ReadBytes(in)
	}
	return topology.ReadFile(file)
}
