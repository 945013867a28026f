package testenv

import (
	"fmt"
	"os/exec"
	"syscall"
)

// StartLoad starts n processes that only spin (a shell loop), to keep
// CPUs busy as on a loaded machine, and returns the function that kills
// them and waits for them. They die with the caller too (SIGKILL on its
// death).
func StartLoad(n int) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		cmds = nil
	}
	for i := 0; i < n; i++ {
		c := exec.Command("sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("starting a busy process: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}
