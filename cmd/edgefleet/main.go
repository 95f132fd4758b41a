// Command edgefleet is the manager and the command-line tool.
package main

import (
	"os"

	"github.com/edgefleet/edgefleet/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
