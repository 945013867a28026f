package leak_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/leak"
)

// ExampleObjects counts the objects of a running Python program by class
// and finds the 1,000 Session objects it made.
func ExampleObjects() {
	// A Python process to look at (any interpreter on the machine).
	pid, stop, err := testenv.ExampleTarget("import sys, time\n" +
		"class Session(object):\n    pass\n" +
		"sessions = [Session() for i in range(1000)]\n" +
		"print('up')\nsys.stdout.flush()\ntime.sleep(60)\n")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	p, err := pyglass.Attach(pid)
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := leak.Objects(context.Background(), p, leak.ObjectsOptions{}, leak.RunOptions{Timeout: 30 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range r.Types {
		if t.Type == "__main__.Session" {
			fmt.Println(t.Type, t.Count, r.Method)
		}
	}
	// Output:
	// __main__.Session 1000 walk
}
