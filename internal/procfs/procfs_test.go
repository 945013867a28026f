package procfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseMaps(t *testing.T) {
	text := `00400000-00401000 r--p 00000000 fd:01 1234 /usr/bin/python3.11
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7f0000100000-7f0000200000 r-xs 0001f000 103:02 99 /tmp/a file (deleted)
7ffd000-7ffe000 rw-p 00000000 00:00 0                          [stack]
`
	ms, err := ParseMaps(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("%d mappings", len(ms))
	}
	m := ms[0]
	if m.Start != 0x400000 || m.End != 0x401000 || m.Perms.String() != "r--p" || m.Major != 0xfd || m.Minor != 1 || m.Inode != 1234 || m.Path != "/usr/bin/python3.11" || !m.IsFile() {
		t.Errorf("first mapping %+v", m)
	}
	if ms[1].Path != "" || ms[1].IsFile() {
		t.Errorf("anonymous mapping %+v", ms[1])
	}
	m = ms[2]
	if m.Path != "/tmp/a file" || !m.Deleted || m.Offset != 0x1f000 || m.Major != 0x103 || !m.Perms.Shared || !m.Perms.Exec || m.Perms.Write {
		t.Errorf("deleted mapping %+v", m)
	}
	if ms[3].Path != "[stack]" || ms[3].IsFile() {
		t.Errorf("stack %+v", ms[3])
	}
	for _, bad := range []string{"zz-1 r--p 0 0:0 0", "1000-0 r--p 0 0:0 0", "0-1 r-p 0 0:0 0", "0-1 r--p 0 00 0"} {
		if _, err := ParseMaps(strings.NewReader(bad)); !errors.Is(err, ErrParse) {
			t.Errorf("%q: %v, want ErrParse", bad, err)
		}
	}
}

func TestParseStatus(t *testing.T) {
	text := "Name:\tmy\\nserver\nState:\tS (sleeping)\nTgid:\t42\nPPid:\t1\nTracerPid:\t7\n" +
		"Uid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nNStgid:\t42\t1\nNSpid:\t43\t2\nThreads:\t3\n"
	s, err := ParseStatus(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "my\nserver" || s.State != 'S' || s.StateName != "sleeping" || s.Tgid != 42 || s.TracerPid != 7 ||
		s.RealUID() != 1000 || s.EffectiveUID() != 1001 || s.Gid[3] != 8 || s.InnerPID() != 2 || s.NStgid[1] != 1 || s.Threads != 3 {
		t.Errorf("%+v", s)
	}
	if s.CapEff != 0 || s.HasCap(19) || s.ThreadFeatures != "" {
		t.Errorf("capabilities or features where the text has none: %+v", s)
	}
	text += "CapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nx86_Thread_features:\tshstk wrss\nx86_Thread_features_locked:\tshstk\n"
	if s, err = ParseStatus(strings.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	if s.CapEff != 0x1ffffffffff || !s.HasCap(19) || s.HasCap(41) || s.HasCap(64) || s.ThreadFeatures != "shstk wrss" {
		t.Errorf("CapEff %#x, x86_Thread_features %q", s.CapEff, s.ThreadFeatures)
	}
	s, err = ParseStatus(strings.NewReader(strings.Replace(text, "000001ffffffffff", "0000000000080000", 1)))
	if err != nil || !s.HasCap(19) || s.HasCap(18) || s.HasCap(20) {
		t.Errorf("CapEff of CAP_SYS_PTRACE alone: %+v %v", s, err)
	}
	if _, err := ParseStatus(strings.NewReader(text + "CapEff:\tzz\n")); !errors.Is(err, ErrParse) {
		t.Errorf("garbled CapEff: %v", err)
	}
	if _, err := ParseStatus(strings.NewReader("Name:\tx\n")); !errors.Is(err, ErrParse) {
		t.Errorf("incomplete status: %v", err)
	}
}

func TestParseStat(t *testing.T) {
	s, err := ParseStat([]byte("123 (a) b (c) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 98765 20 21\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Comm != "a) b (c" || s.State != 'Z' || s.PPid != 1 || s.Flags != 6 || s.StartTime != 98765 || s.UTime != 11 || s.STime != 12 || !IsZombie(s.State) {
		t.Errorf("%+v", s)
	}
	if _, err := ParseStat([]byte("123 (a) Z 1 2 3 4 5 6 7 8 9 10 -11 12 13 14 15 16 17 18 98765 20 21\n")); !errors.Is(err, ErrParse) {
		t.Errorf("negative utime: %v", err)
	}
	if _, err := ParseStat([]byte("123 (x) S 1")); !errors.Is(err, ErrParse) {
		t.Errorf("short stat: %v", err)
	}
	if s.Processor != -1 {
		t.Errorf("processor of a stat without field 39: %d, want -1", s.Processor)
	}
	long := "123 (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 98765"
	for i := 23; i < 39; i++ {
		long += " " + strconv.Itoa(i)
	}
	if s, err := ParseStat([]byte(long + " 39 40\n")); err != nil || s.Processor != 39 {
		t.Errorf("processor (field 39) of %q: %+v, %v; want 39", long, s, err)
	}
	self, err := Self().Stat()
	if err != nil || self.Processor < 0 || self.Processor >= runtime.NumCPU()*64 {
		t.Errorf("this process's last CPU: %+v, %v", self, err)
	}
}

// TestKillChild: a real child is killed only while it is the child of
// the given parent that started at the given time.
func TestKillChild(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	child := New(cmd.Process.Pid)
	st, err := child.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.KillChild(os.Getpid(), st.StartTime+1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("KillChild with another start time: %v, want ErrNotExist", err)
	}
	if err := child.KillChild(os.Getpid()+1, st.StartTime); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("KillChild with another parent: %v, want ErrNotExist", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the child ended after refused kills: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := child.KillChild(os.Getpid(), st.StartTime); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the child ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the child was not killed")
	}
}

func TestParseSyscall(t *testing.T) {
	s, err := ParseSyscall("running\n")
	if err != nil || !s.Running {
		t.Errorf("running: %+v %v", s, err)
	}
	s, err = ParseSyscall("230 0x1 0x0 0x7ffc 0x0 0x0 0x0 0x7ffd00 0x7f0001\n")
	if err != nil || !s.InSyscall || s.Nr != 230 || s.Args[0] != 1 || s.Args[2] != 0x7ffc || s.SP != 0x7ffd00 || s.PC != 0x7f0001 {
		t.Errorf("in syscall: %+v %v", s, err)
	}
	s, err = ParseSyscall("-1 0x7ffd00 0x7f0001\n")
	if err != nil || s.InSyscall || s.Running || s.Nr != -1 || s.PC != 0x7f0001 {
		t.Errorf("blocked: %+v %v", s, err)
	}
	if _, err := ParseSyscall("1 2"); !errors.Is(err, ErrParse) {
		t.Errorf("bad: %v", err)
	}
}

func TestParseAuxv(t *testing.T) {
	b := make([]byte, 0, 64)
	put := func(v uint64) {
		for i := 0; i < 8; i++ {
			b = append(b, byte(v>>(8*i)))
		}
	}
	put(atEntry)
	put(0x401000)
	put(atBase)
	put(0x7f0000)
	put(atNull)
	put(0)
	put(atEntry) // after AT_NULL: ignored
	put(1)
	a, err := ParseAuxv(b)
	if err != nil || a.Entry != 0x401000 || a.Base != 0x7f0000 {
		t.Errorf("%+v %v", a, err)
	}
}

func TestLookupPasswd(t *testing.T) {
	pw := []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
	if n, ok := LookupPasswd(pw, 65534); !ok || n != "nobody" {
		t.Errorf("%q %v", n, ok)
	}
	if _, ok := LookupPasswd(pw, 5); ok {
		t.Error("found uid 5")
	}
}

// startSleep starts a child that sleeps in a system call.
func startSleep(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(path, "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("starting %s: %v", path, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := New(cmd.Process.Pid)
	for i := 0; i < 500; i++ {
		if s, err := p.Stat(); err == nil && s.State == 'S' {
			if exe, _ := p.Exe(); strings.HasSuffix(exe, filepath.Base(path)) {
				return cmd
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("child did not go to sleep")
	return nil
}

func TestRealProcess(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	cmd := startSleep(t, sleep)
	p := New(cmd.Process.Pid)
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "sleep" || st.Tgid != p.PID || st.PPid != os.Getpid() || st.InnerPID() != p.PID || st.Threads != 1 || st.RealUID() != os.Getuid() {
		t.Errorf("status %+v", st)
	}
	tasks, err := p.Tasks()
	if err != nil || len(tasks) != 1 || tasks[0].TID != p.PID || tasks[0].Comm != "sleep" || tasks[0].State != 'S' {
		t.Errorf("tasks %+v %v", tasks, err)
	}
	if comm, err := p.Comm(); err != nil || comm != "sleep" {
		t.Errorf("comm %q %v", comm, err)
	}
	if !p.HasTask(p.PID) || p.HasTask(os.Getpid()) || !Self().HasTask(os.Getpid()) {
		t.Error("HasTask: the child's only thread, or our main thread, misplaced")
	}
	if pids, err := PIDs(); err != nil || !slices.Contains(pids, p.PID) || !slices.Contains(pids, os.Getpid()) {
		t.Errorf("PIDs: %d processes, %v; the child or ourselves missing", len(pids), err)
	}
	if scope, ok := PtraceScope(); ok && (scope < 0 || scope > 3) {
		t.Errorf("ptrace_scope %d", scope)
	}
	if root, err := p.OpenRoot(); err != nil {
		t.Errorf("OpenRoot: %v", err)
	} else {
		root.Close()
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	if self, err := Self().Status(); err != nil || self.CapEff != uint64(caps[1].Effective)<<32|uint64(caps[0].Effective) {
		t.Errorf("our own status %+v %v; capget says %#x %#x", self, err, caps[1].Effective, caps[0].Effective)
	}
	sc, err := p.TaskSyscall(p.PID)
	if err != nil || !sc.InSyscall || sc.Nr < 0 || sc.PC == 0 {
		t.Errorf("syscall %+v %v", sc, err)
	}
	av, err := p.Auxv()
	if err != nil || av.Entry == 0 || av.Base == 0 {
		t.Errorf("auxv %+v %v", av, err)
	}
	cmdline, err := p.Cmdline()
	if err != nil || len(cmdline) != 2 || cmdline[1] != "60" {
		t.Errorf("cmdline %q %v", cmdline, err)
	}
	for _, ns := range []string{NSMount, NSPID} {
		if same, err := p.SameNamespace(ns); err != nil || !same {
			t.Errorf("namespace %s: same %v, %v", ns, same, err)
		}
	}
	if os.Getuid() == 0 {
		if name := p.UserName(0); name != "root" {
			t.Errorf("user 0 is %q", name)
		}
	}
	if name := p.UserName(4242424); name != "4242424" {
		t.Errorf("unknown uid named %q", name)
	}
	ms, err := p.Maps()
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	for _, m := range ms {
		if !m.IsFile() {
			continue
		}
		f, via, err := p.OpenMapping(m)
		if err != nil {
			t.Errorf("opening %s: %v", m.Path, err)
			continue
		}
		f.Close()
		opened++
		if exe, _ := p.Exe(); m.Path == exe && !strings.HasSuffix(via, "/exe") {
			t.Errorf("main program opened as %s", via)
		}
	}
	if opened == 0 {
		t.Error("no file mapping opened")
	}
}

// TestDeletedFiles opens a deleted main program (through /proc/PID/exe)
// and a deleted mapped file (through map_files).
func TestDeletedFiles(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sleepy")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := startSleep(t, bin)
	os.Remove(bin)
	p := New(cmd.Process.Pid)
	ms, err := p.Maps()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ms {
		if m.Path == bin {
			found = true
			if !m.Deleted {
				t.Errorf("%s not marked deleted", bin)
			}
			f, via, err := p.OpenMapping(m)
			if err != nil {
				t.Fatalf("opening deleted exe: %v", err)
			}
			f.Close()
			if via != p.Path("exe") {
				t.Errorf("opened as %s", via)
			}
			break
		}
	}
	if !found {
		t.Fatalf("%s not in maps", bin)
	}

	// A deleted file mapped in our own process.
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ, syscall.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	os.Remove(data)
	ms, err = Self().Maps()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Path == data {
			if !m.Deleted {
				t.Errorf("%s not marked deleted", data)
			}
			f, via, err := Self().OpenMapping(m)
			if err != nil {
				if os.Geteuid() != 0 {
					t.Skipf("map_files needs privileges: %v", err)
				}
				t.Fatalf("opening deleted mapping: %v", err)
			}
			f.Close()
			if !strings.Contains(via, "/map_files/") {
				t.Errorf("opened as %s", via)
			}
			return
		}
	}
	t.Fatalf("%s not in our maps", data)
}

func TestNoProcess(t *testing.T) {
	p := New(1<<22 + 17)
	if _, err := p.Status(); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Status: %v", err)
	}
	if _, err := p.Maps(); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Maps: %v", err)
	}
	if _, err := p.Tasks(); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Tasks: %v", err)
	}
	if _, err := p.Exe(); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Exe: %v", err)
	}
}

// TestTaskExecStart: the scheduler's exec_start is parsed to the
// nanosecond, a sleeping thread of ours has not run for about as long as
// it slept, and malformed files are errors, not panics.
func TestTaskExecStart(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"x (1, #threads: 1)\n----\nse.exec_start                                :      12569410.100861\n": 12569410*time.Millisecond + 100861*time.Nanosecond,
		"se.exec_start : 5.1\n": 5*time.Millisecond + 100000*time.Nanosecond,
		"se.exec_start : 7\n":   7 * time.Millisecond,
	} {
		if got, err := parseExecStart([]byte(in)); err != nil || got != want {
			t.Errorf("parseExecStart(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "se.exec_start : -1\n", "se.exec_start : 1.1234567\n", "se.exec_start : x.5\n", "se.vruntime : 5.0\n"} {
		if _, err := parseExecStart([]byte(in)); err == nil {
			t.Errorf("parseExecStart(%q): no error", in)
		}
	}
	tids := make(chan int)
	start := time.Now()
	go func() {
		runtime.LockOSThread() // this thread only sleeps, then ends with the goroutine
		tids <- syscall.Gettid()
		Nanosleep(time.Second)
	}()
	tid := <-tids
	asleep := time.Now()
	time.Sleep(300 * time.Millisecond)
	least := time.Since(asleep)
	since, ok := Self().SinceRan([]int{tid})[tid]
	most := time.Since(start)
	if _, err := Self().TaskExecStart(tid); err != nil {
		t.Skipf("no scheduler statistics: %v", err)
	}
	// It went to sleep a moment after it sent its id (half the time, for
	// a loaded machine), and before start.
	if !ok || since < least/2 || since > most {
		t.Errorf("a thread asleep for %v has not run for %v (%v), want at most %v", least, since, ok, most)
	}
}

// TestNumThreads: a kept-open /proc/PID/stat gives the process's thread
// count, as /proc/PID/task lists it, again at each read.
func TestNumThreads(t *testing.T) {
	s, err := New(os.Getpid()).OpenStat()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	count := func() int {
		es, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	check := func() {
		t.Helper()
		// The Go runtime may start a thread between the two reads:
		// the same count on both sides of a read is the answer.
		for try := 0; try < 10; try++ {
			before := count()
			n, err := s.NumThreads()
			if err != nil {
				t.Fatal(err)
			}
			if n == before && count() == before {
				return
			}
		}
		t.Fatalf("NumThreads never agreed with /proc/self/task")
	}
	check()
	// A process of one thread.
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	one, err := New(cmd.Process.Pid).OpenStat()
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if n, err := one.NumThreads(); err != nil || n != 1 {
		t.Errorf("sleep's NumThreads: %d, %v; want 1", n, err)
	}
}

// TestSinceRanAcrossCPUs: a thread asleep on one CPU, asked about from
// another: each CPU's scheduler clock leaves out its own interrupt and
// stolen time, so on this machine two CPUs' clocks were 12.7 ms apart,
// and a reading taken on the other CPU was off by that much. SinceRan
// reads on the sleeper's CPU: within a tick (4 ms at 250 Hz) of the time
// since the sleeper's last timestamp before it slept.
func TestSinceRanAcrossCPUs(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil || all.Count() < 2 {
		t.Skipf("needs two CPUs (affinity %v, %v)", all.Count(), err)
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if _, err := Self().TaskExecStart(syscall.Gettid()); err != nil {
		t.Skipf("no scheduler statistics: %v", err)
	}
	pin := func(c int) {
		var one unix.CPUSet
		one.Set(c)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			t.Fatal(err)
		}
	}
	// One measurement: a thread put to sleep on CPU sleeper, asked about
	// from CPU reader 300 ms later. It returns SinceRan's answer and the
	// wall-clock bounds it must fall in.
	measure := func(sleeper, reader int) (since, lo, hi time.Duration, ok bool) {
		type asleep struct {
			tid int
			at  time.Time
		}
		ch := make(chan asleep, 1)
		go func() {
			runtime.LockOSThread() // pinned, it ends with the goroutine
			var one unix.CPUSet
			one.Set(sleeper)
			unix.SchedSetaffinity(0, &one)
			ch <- asleep{syscall.Gettid(), time.Now()}
			// (through Syscall: the runtime knows it is in a system call
			// and sends it no preemption signal, which would wake it)
			ts := unix.NsecToTimespec(int64(2 * time.Second))
			unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, nil)
		}()
		a := <-ch
		// The sleeper may run for a while after the send (on a loaded
		// machine, milliseconds): the lower bound counts from when it is
		// seen inside clock_nanosleep, the upper one from the send.
		var asleepBy time.Time
		for deadline := time.Now().Add(time.Second); asleepBy.IsZero(); {
			sc, err := Self().TaskSyscall(a.tid)
			if err == nil && sc.InSyscall && sc.Nr == unix.SYS_CLOCK_NANOSLEEP {
				asleepBy = time.Now()
			} else if time.Now().After(deadline) {
				t.Fatalf("thread %d not seen in clock_nanosleep within 1s (%+v, %v)", a.tid, sc, err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		runtime.LockOSThread()
		pin(reader)
		before := time.Since(asleepBy)
		since, ok = Self().SinceRan([]int{a.tid})[a.tid]
		after := time.Since(a.at)
		var now unix.CPUSet
		unix.SchedGetaffinity(0, &now)
		if err := unix.SchedSetaffinity(0, &all); err != nil {
			t.Fatal(err)
		}
		runtime.UnlockOSThread()
		if now.Count() != 1 || !now.IsSet(reader) {
			t.Errorf("SinceRan left the calling thread's affinity at %d CPUs, want it back on CPU %d only", now.Count(), reader)
		}
		const tick = 4 * time.Millisecond
		return since, before - tick, after + time.Millisecond, ok
	}
	// On a loaded machine one measurement can come out a few
	// milliseconds short (the reader's own clock lags while it waits to
	// run on the sleeper's CPU); a clock read on the wrong CPU is wrong
	// every time. So each direction has three tries.
	for _, pair := range [][2]int{{cpus[0], cpus[1]}, {cpus[1], cpus[0]}} {
		sleeper, reader := pair[0], pair[1]
		var misses []string
		good := false
		for try := 0; try < 3 && !good; try++ {
			since, lo, hi, ok := measure(sleeper, reader)
			if good = ok && since >= lo && since <= hi; !good {
				misses = append(misses, fmt.Sprintf("%v (%v), want between %v and %v", since, ok, lo, hi))
			}
		}
		if !good {
			t.Errorf("asleep on CPU %d, asked from CPU %d: not run for %s", sleeper, reader, strings.Join(misses, "; "))
		} else if len(misses) > 0 {
			t.Logf("needed another try: %s", strings.Join(misses, "; "))
		}
	}
}

// TestShortSlice: on a kernel with custom slices, the calling thread has
// the slice asked for until restore, and the default one after; the
// goroutine is locked to its thread meanwhile.
func TestShortSlice(t *testing.T) {
	if !CustomSlices() {
		t.Skip("this kernel gives no custom time slices (Linux 6.12 and later do)")
	}
	done := make(chan error)
	go func() {
		restore, ok := ShortSlice(100 * time.Microsecond)
		tid := unix.Gettid()
		a, err := unix.SchedGetAttr(0, 0)
		switch {
		case !ok:
			err = fmt.Errorf("ShortSlice says the kernel did not take the slice")
		case err == nil && a.Runtime != 100000:
			err = fmt.Errorf("the thread's slice is %d ns, want 100000", a.Runtime)
		}
		runtime.Gosched()
		if err == nil && unix.Gettid() != tid {
			err = fmt.Errorf("the goroutine moved to another thread while its slice was short")
		}
		restore()
		if a, e := unix.SchedGetAttr(0, 0); err == nil && e == nil && a.Runtime == 100000 {
			err = fmt.Errorf("the short slice stayed after restore")
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCaughtSignalPending: a pending signal counts when it is caught and
// not blocked, whether pending for the thread or the process; this
// process's own status parses (SIGURG is caught by Go's runtime).
func TestCaughtSignalPending(t *testing.T) {
	base := "Name:\tx\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\n"
	for _, c := range []struct {
		sigs string
		want bool
	}{
		{"SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigCgt:\tffffffffffffffff\n", false},
		{"SigPnd:\t0000000000000002\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigCgt:\t0000000000000002\n", true},
		{"SigPnd:\t0000000000000000\nShdPnd:\t0000000000004000\nSigBlk:\t0000000000000000\nSigCgt:\t0000000000004000\n", true},
		{"SigPnd:\t0000000000000002\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000002\nSigCgt:\t0000000000000002\n", false},
		{"SigPnd:\t0000000000000002\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigCgt:\t0000000000000000\n", false},
	} {
		st, err := ParseStatus(strings.NewReader(base + c.sigs))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CaughtSignalPending(); got != c.want {
			t.Errorf("%q: CaughtSignalPending %v, want %v", c.sigs, got, c.want)
		}
	}
	st, err := Self().Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Catches(unix.SIGURG) {
		t.Errorf("SigCgt %#x: SIGURG not caught in a Go program", st.SigCgt)
	}
	blk, err := ParseStatus(strings.NewReader(base + "SigBlk:\t0000000000004002\nSigCgt:\t8000000000000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !blk.Blocks(unix.SIGINT) || !blk.Blocks(unix.SIGTERM) || blk.Blocks(unix.SIGHUP) || !blk.Catches(64) || blk.Catches(63) || blk.Catches(0) || blk.Blocks(65) {
		t.Errorf("Blocks/Catches misread SigBlk %#x, SigCgt %#x", blk.SigBlk, blk.SigCgt)
	}
}
