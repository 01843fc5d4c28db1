// Command eddy is the Eddy broker and its command-line tools in one binary:
// the broker (serve) and the client, admin and appliance commands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "eddy:", err)
		os.Exit(1)
	}
}
