package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"netlab/compose"
	"netlab/topology"
)

func (a *app) importCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Write a lab from another tool's file (import compose FILE)",
	}
	var output string
	compose := &cobra.Command{
		Use:   "compose FILE",
		Short: "Write a Docker-level lab from a Docker Compose file",
		Long: `Read a Docker Compose file with the compose specification's own library and
print a lab at Docker's level: its networks (subnets, gateways, internal), its
services as containers (networks, aliases, fixed addresses and MACs, hostnames,
published ports, net.* sysctls, network_mode host or none), netlab's own HTTP
server on each published port in place of the image's, and checks that services
sharing a network reach each other and the others do not. What a lab cannot
hold (images, commands, volumes, environment, ...) is listed on stderr.

  netlab import compose docker-compose.yml > lab.yaml
  netlab up lab.yaml && netlab test lab.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := composeImport(cmd, args[0])
			if err != nil {
				return err
			}
			if output == "" {
				if _, err := a.Out.Write(res.Lab); err != nil {
					return err
				}
			} else if err := writeOutput(output, res.Lab, 0o644); err != nil {
				return err
			}
			// Both quote the compose file (network drivers, keys): shown, never obeyed.
			for _, n := range res.Notes {
				fmt.Fprintf(a.Err, "netlab: %s\n", topology.Printable(n))
			}
			if len(res.Ignored) > 0 {
				fmt.Fprintf(a.Err, "netlab: ignored (a lab does not hold them): %s\n", topology.Printable(strings.Join(res.Ignored, ", ")))
			}
			return nil
		},
	}
	compose.Flags().StringVarP(&output, "output", "o", "", "write the lab to this file instead of standard output")
	cmd.AddCommand(compose)
	return cmd
}

func composeImport(cmd *cobra.Command, file string) (*compose.Result, error) {
	return compose.Import(cmd.Context(), file)
}
