package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"netlab/topology"
)

func (a *app) graphCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph FILE [-f ascii|mermaid|dot]",
		Short: "Draw the lab: namespaces, bridges and links with their interfaces and addresses",
		Long: `Draw the lab from its file (nothing is read from the kernel):

  -f ascii    for a terminal: each bridge with its ports, then the other links (default)
  -f mermaid  a flowchart that code-hosting pages render (paste it in a mermaid block)
  -f dot      for Graphviz: netlab graph lab.yaml -f dot | dot -Tsvg > lab.svg`,
		Args: labFileArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := topology.Load(args[0])
			if err != nil {
				return err
			}
			text, err := lab.Graph(format)
			if err != nil {
				return err
			}
			fmt.Fprint(a.Out, text)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "ascii", "ascii, mermaid or dot ("+strings.Join(topology.GraphFormats, ", ")+")")
	return cmd
}
