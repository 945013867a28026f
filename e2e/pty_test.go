package e2e

import (
	"os"
	"os/exec"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// startOnPty starts cmd on a new pseudo-terminal of the given size, its
// controlling terminal (Ctrl-C written to the returned master is SIGINT
// to it), and returns the master.
//
// The terminal has NOFLSH set. Without it, the kernel's line discipline
// sends SIGINT for a typed Ctrl-C and then discards the output queued
// for the reader: a program that answers the signal at once (pyglass
// exec printing "left the code running" on a second Ctrl-C) can have
// that answer thrown away when it runs before the line discipline's
// flush (seen once in CI: neither the answer nor the "^C" echo came).
// A user's terminal has the same race; the tests check what pyglass
// prints, not the kernel's flush.
func startOnPty(cmd *exec.Cmd, rows, cols uint16) (*os.File, error) {
	return startOnPtyWith(cmd, rows, cols, true)
}

// startOnPtyWith is startOnPty; with ctty false the terminal is only
// cmd's stdin, stdout and stderr, in a new session that has no
// controlling terminal (as under setsid).
func startOnPtyWith(cmd *exec.Cmd, rows, cols uint16, ctty bool) (*os.File, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, err
	}
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		ptmx.Close()
		return nil, err
	}
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		ptmx.Close()
		return nil, err
	}
	tio.Lflag |= unix.NOFLSH
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tio); err != nil {
		ptmx.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: ctty}
	if err := cmd.Start(); err != nil {
		ptmx.Close()
		return nil, err
	}
	return ptmx, nil
}
