package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// labFileArg checks that a command got exactly one argument, the lab file, and
// says so in those words when it did not (cobra would say "accepts 1 arg(s),
// received 0").
func labFileArg(cmd *cobra.Command, args []string) error {
	name := cmd.Name()
	switch {
	case len(args) == 0:
		return fmt.Errorf("%s needs the lab file: netlab %s FILE (for example netlab %s labs/docker-bridge.yaml)", name, name, name)
	case len(args) > 1:
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = strconv.Quote(a) // escapes what a terminal would act on
		}
		return fmt.Errorf("%s takes one lab file, got %d arguments: %s", name, len(args), strings.Join(quoted, " "))
	}
	return nil
}
