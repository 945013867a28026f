package pyglass_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
	py := "python3"
	if all := testenv.Interpreters(); len(all) > 0 && all[len(all)-1].Chroot == "" {
		py = all[len(all)-1].Path
	}
	cmd := exec.Command(py, "-c", "import sys, time\nprint('up')\nsys.stdout.flush()\ntime.sleep(60)")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer cmd.Process.Kill()
	out.Read(make([]byte, 3)) // wait until it runs

	p, err := pyglass.Attach(cmd.Process.Pid)
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
