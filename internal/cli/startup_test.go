package cli

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartupInit checks that pyglass's own packages do no work when the
// program starts: every run of pyglass (`pyglass version` included) pays
// for the package initialisers of everything it links, so regular
// expressions, tables and embedded files are built or copied at their
// first use instead. It runs this test binary (which links the same
// packages as pyglass) again with the runtime's init trace and adds up
// the memory pyglass's packages allocate in their initialisers.
func TestStartupInit(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("running %s with the init trace: %v: %s", os.Args[0], err, stderr.String())
	}
	// "init github.com/pyglass/pyglass/internal/pyproc @14 ms, 0.27 ms clock, 46712 bytes, 437 allocs"
	const own = "github.com/pyglass/pyglass"
	var bytesOwn, allocsOwn, pkgs int
	var report []string
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 11 || f[0] != "init" || f[6] != "clock," || f[8] != "bytes," {
			continue
		}
		if f[1] == "github.com/google/pprof/profile" {
			t.Errorf("google/pprof's profile package is linked in: its initialisers compile regular expressions at every start (%s ms); pyglass writes pprof itself (profile/pprofenc.go) and uses that package in tests only", f[4])
		}
		if f[1] != own && !strings.HasPrefix(f[1], own+"/") {
			continue
		}
		b, err1 := strconv.Atoi(f[7])
		a, err2 := strconv.Atoi(f[9])
		if err1 != nil || err2 != nil {
			t.Fatalf("parsing %q", sc.Text())
		}
		pkgs++
		bytesOwn += b
		allocsOwn += a
		if b > 1024 {
			report = append(report, f[1]+": "+f[7]+" bytes, "+f[9]+" allocs")
		}
	}
	if pkgs == 0 {
		t.Fatalf("no init trace of pyglass's packages in: %s", stderr.String())
	}
	t.Logf("pyglass's %d initialised packages: %d bytes in %d allocations\n%s", pkgs, bytesOwn, allocsOwn, strings.Join(report, "\n"))
	if bytesOwn > 32<<10 {
		t.Errorf("pyglass's packages allocate %d bytes (%d allocations) when the program starts, more than 32 KiB: build what they need at first use (sync.OnceValue)\n%s", bytesOwn, allocsOwn, strings.Join(report, "\n"))
	}
}

// TestSignalContext: the signals signalContext registers in the
// background are taken once signalsReady returns (SIGUSR2's default
// action would end this test binary): the first cancels the context, a
// second is still taken, not left to its default action.
func TestSignalContext(t *testing.T) {
	signalsReady(context.Background()) // no signals: returns at once
	ctx, stop := signalContext(context.Background(), syscall.SIGUSR2)
	defer stop()
	signalsReady(ctx)
	if ctx.Err() != nil {
		t.Fatal("cancelled before any signal")
	}
	syscall.Kill(os.Getpid(), syscall.SIGUSR2)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGUSR2 did not cancel the context")
	}
	syscall.Kill(os.Getpid(), syscall.SIGUSR2)
	time.Sleep(50 * time.Millisecond)

	// stop cancels too, and nothing waits for a signal after it.
	ctx2, stop2 := signalContext(context.Background(), syscall.SIGUSR2)
	signalsReady(ctx2)
	stop2()
	if ctx2.Err() == nil {
		t.Fatal("stop did not cancel the context")
	}
}
