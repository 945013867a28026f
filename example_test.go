package pyglass_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// Example shows the whole life cycle: attach to a running Python process,
// read what pyglass knows about it, read its stacks without running
// anything in it, then run code inside it and get its output back.
func Example() {
	// A Python process to look at (any interpreter on the machine).
	pid, stop, err := testenv.ExampleTarget("import sys, threading, time\nprint('up')\nsys.stdout.flush()\ntime.sleep(60)")
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
	info := p.Info()
	fmt.Println("can run code:", info.CanExec)

	dump, err := p.Stacks(context.Background(), pyglass.StackOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	main := dump.Threads[0]
	fmt.Println("main thread:", main.Name, main.Main, main.Frames[len(main.Frames)-1].Function)

	var stdout, stderr strings.Builder
	res, err := p.Exec(context.Background(), []byte("import os\nprint(__name__, os.getpid() > 0)\n1/0\n"),
		pyglass.ExecOptions{Stdout: &stdout, Stderr: &stderr, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Print(stdout.String())
	fmt.Println("raised:", res.Raised, strings.Contains(stderr.String(), "ZeroDivisionError"))
	// Output:
	// can run code: true
	// main thread: MainThread true <module>
	// __pyglass__ True
	// raised: true true
}
