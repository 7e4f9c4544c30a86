package main

import (
	"io"

	"netlab/topology"
)

// writeExpanded prints the lab file with its ranges expanded (validate -o yaml).
func writeExpanded(w io.Writer, lab *topology.Lab) error {
	out, err := lab.ExpandedYAML()
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
