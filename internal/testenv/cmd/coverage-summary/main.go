// Command coverage-summary prints the interpreter coverage of a whole test
// run from the records that testenv.Main appended to PYGLASS_COVERAGE_FILE.
//
//	coverage-summary FILE
package main

import (
	"fmt"
	"os"

	"github.com/pyglass/pyglass/internal/testenv"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: coverage-summary FILE")
		os.Exit(2)
	}
	s, err := testenv.SummarizeFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "coverage-summary:", err)
		os.Exit(1)
	}
	fmt.Print(s)
	for _, a := range testenv.Missing() {
		fmt.Printf("  absent on this machine: %s: %s\n", a.Label, a.Reason)
	}
}
