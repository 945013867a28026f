// Command pyglass looks into live Python processes. See `pyglass help`.
package main

import (
	"os"

	"github.com/pyglass/pyglass/internal/cli"
)

func main() { os.Exit(int(cli.Main(os.Args[1:], cli.Stdio()))) }
