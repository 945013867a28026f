package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Monotonic returns the process's CLOCK_MONOTONIC now (what its
// time.monotonic() would say): this process's clock, moved by the
// difference between the offsets of the two processes' time namespaces
// (/proc/PID/timens_offsets; a kernel without time namespaces has no such
// file, and no offset).
func (p Proc) Monotonic() (time.Duration, error) {
	theirs, err := p.monotonicOffset()
	if err != nil {
		return 0, err
	}
	ours, err := Proc{PID: os.Getpid(), Root: p.Root}.monotonicOffset()
	if err != nil {
		return 0, err
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	return time.Duration(ts.Nano()) + theirs - ours, nil
}

// monotonicOffset returns the CLOCK_MONOTONIC offset of the process's
// time namespace.
func (p Proc) monotonicOffset() (time.Duration, error) {
	b, err := p.readFile("timens_offsets")
	if errors.Is(err, ErrNoProcess) {
		return 0, err
	}
	if err != nil {
		return 0, nil // no time namespaces
	}
	return parseMonotonicOffset(b)
}

// parseMonotonicOffset reads the "monotonic SECS NSECS" line of a
// timens_offsets file.
func parseMonotonicOffset(b []byte) (time.Duration, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "monotonic" && f[0] != "1" {
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || sec < -1<<32 || sec > 1<<32 || nsec < 0 || nsec >= 1e9 {
			return 0, fmt.Errorf("timens_offsets: %q: %w", sc.Text(), ErrParse)
		}
		return time.Duration(sec)*time.Second + time.Duration(nsec), nil
	}
	return 0, nil
}
