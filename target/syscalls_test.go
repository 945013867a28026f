package target

import (
	"bufio"
	"debug/elf"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestSyscallNames: every system call named for a machine has the number
// the kernel's headers give it (x86-64's unistd_64.h, the generic table
// arm64 uses), futex included.
func TestSyscallNames(t *testing.T) {
	checked := 0
	for machine, header := range map[elf.Machine]string{
		elf.EM_X86_64:  "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
		elf.EM_AARCH64: "/usr/include/asm-generic/unistd.h",
	} {
		nrs := headerNumbers(t, header)
		if nrs == nil {
			continue
		}
		checked++
		for nr, name := range syscallNames[machine] {
			if want, ok := nrs[name]; !ok || want != nr {
				t.Errorf("%v: %s is %d, %s says %d (%v)", machine, name, nr, header, want, ok)
			}
			if SyscallName(machine, nr) != name {
				t.Errorf("%v: SyscallName(%d) = %q, want %q", machine, nr, SyscallName(machine, nr), name)
			}
		}
		if Futex(machine) != nrs["futex"] || SyscallName(machine, Futex(machine)) != "futex" {
			t.Errorf("%v: futex is %d, %s says %d", machine, Futex(machine), header, nrs["futex"])
		}
	}
	if checked == 0 {
		t.Skip("no kernel headers to check the tables against")
	}
	if Futex(elf.EM_386) != -1 || SyscallName(elf.EM_386, 0) != "" {
		t.Error("an unknown machine's system calls are named")
	}
}

// headerNumbers reads the "#define __NR_name number" lines of a kernel
// header (nil when it is missing).
func headerNumbers(t *testing.T, path string) map[string]int64 {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 || fs[0] != "#define" || !strings.HasPrefix(fs[1], "__NR_") {
			continue
		}
		if n, err := strconv.ParseInt(fs[2], 10, 64); err == nil {
			out[strings.TrimPrefix(fs[1], "__NR_")] = n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
