// Package live reads the memory of a running process without stopping
// it, with process_vm_readv(2), or by pread on /proc/PID/mem where that
// system call is unavailable: pyglass's one memory reader of a live
// process. It also writes, for the two features that must
// (process_vm_writev for PEP 768's request fields, /proc/PID/mem for the
// injection's code, which only a tracer may write).
//
// Reads are not atomic with respect to the target: memory can change
// under a read. Callers validate what they read.
package live

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/memory"
)

// Process is the address space of a live process. It implements
// memory.Reader and is safe for concurrent use.
type Process struct {
	pid int

	mu     sync.Mutex
	local  [1]unix.Iovec
	remote [1]unix.RemoteIovec
	mem    *os.File // set when process_vm_readv is unavailable
	rw     *os.File // /proc/PID/mem opened for writing (WriteForced)

	vlocal  []unix.Iovec // ReadV's, kept between calls
	vremote []unix.RemoteIovec
	vend    []int      // per segment, where its bytes end in vlocal
	gap     [4096]byte // where ReadV reads the bytes between two segments
}

var _ memory.VectorReader = (*Process)(nil)

// Open returns a reader of pid's memory. It fails with procfs.ErrNoProcess
// when there is no such process. Permission is checked by the first read:
// process_vm_readv needs ptrace access to the target.
func Open(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("opening process %d: %w", pid, procfs.ErrNoProcess)
	}
	if !procfs.New(pid).Exists() {
		return nil, fmt.Errorf("opening process %d: %w", pid, procfs.ErrNoProcess)
	}
	p := &Process{pid: pid}
	if !vmReadvWorks() {
		if err := p.openMem(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// openMem switches the reader to /proc/PID/mem.
func (p *Process) openMem() error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", p.pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("opening memory of process %d: %w", p.pid, procfs.ErrNoProcess)
		}
		return fmt.Errorf("opening memory of process %d: %w", p.pid, err)
	}
	p.mem = f
	return nil
}

var (
	probeWord   = [8]byte{1}
	vmReadvOnce sync.Once
	vmReadvOK   bool
)

// vmReadvWorks probes process_vm_readv once on our own process.
func vmReadvWorks() bool {
	vmReadvOnce.Do(func() {
		var dst [8]byte
		l := []unix.Iovec{{Base: &dst[0], Len: 8}}
		// The remote address is a plain integer: what it names must not
		// be on the goroutine's stack, which may move before the call.
		r := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&probeWord[0])), Len: 8}}
		_, err := unix.ProcessVMReadv(os.Getpid(), l, r, 0)
		vmReadvOK = !errors.Is(err, unix.ENOSYS)
	})
	return vmReadvOK
}

// PID returns the process id.
func (p *Process) PID() int { return p.pid }

// Close releases the reader's resources.
func (p *Process) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	for _, f := range []**os.File{&p.mem, &p.rw} {
		if *f != nil {
			if e := (*f).Close(); err == nil {
				err = e
			}
			*f = nil
		}
	}
	return err
}

// WriteAt writes b at addr with process_vm_writev, without stopping the
// process. The kernel refuses a page the process itself could not write
// (no FOLL_FORCE: code and read-only data stay untouched): memory.ErrFault,
// as for an unmapped page; a vanished process is procfs.ErrNoProcess. A
// failed write may have stored a prefix of b (the count says how much).
func (p *Process) WriteAt(b []byte, addr uint64) (int, error) {
	done := 0
	// Each round moves at least one byte or fails; the bound only guards
	// against a kernel that returns 0 forever.
	for round := 0; done < len(b) && round <= len(b); round++ {
		local := []unix.Iovec{{Base: &b[done]}}
		local[0].SetLen(len(b) - done)
		remote := []unix.RemoteIovec{{Base: uintptr(addr) + uintptr(done), Len: len(b) - done}}
		n, err := unix.ProcessVMWritev(p.pid, local, remote, 0)
		if err != nil {
			return done, p.writeErr(addr+uint64(done), err)
		}
		if n <= 0 {
			break
		}
		done += n
	}
	if done < len(b) {
		return done, fmt.Errorf("writing process %d at %#x: %w", p.pid, addr+uint64(done), memory.ErrShortRead)
	}
	return done, nil
}

// WriteForced writes b at addr through /proc/PID/mem, which lets the
// process's tracer write pages the process cannot (its code): for the
// injection, which holds the thread it borrows with ptrace.
func (p *Process) WriteForced(b []byte, addr uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rw == nil {
		f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", p.pid), os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("opening memory of process %d: %w", p.pid, procfs.ErrNoProcess)
			}
			return fmt.Errorf("opening memory of process %d: %w", p.pid, err)
		}
		p.rw = f
	}
	if addr > 1<<63-1 {
		return fmt.Errorf("writing process %d at %#x: %w", p.pid, addr, memory.ErrFault)
	}
	n, err := p.rw.WriteAt(b, int64(addr))
	if err != nil {
		return p.writeErr(addr, err)
	}
	if n != len(b) {
		return fmt.Errorf("writing %d bytes at %#x in process %d: short write (%d)", len(b), addr, p.pid, n)
	}
	return nil
}

// writeErr classifies the error of a write at addr.
func (p *Process) writeErr(addr uint64, err error) error {
	switch {
	case errors.Is(err, unix.EFAULT), errors.Is(err, unix.EIO):
		return fmt.Errorf("writing process %d at %#x: %w", p.pid, addr, memory.ErrFault)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("writing process %d: %w", p.pid, procfs.ErrNoProcess)
	}
	return fmt.Errorf("writing process %d at %#x: %w", p.pid, addr, err)
}

// ReadAt implements memory.Reader. A read that stops part way fails with
// memory.ErrShortRead, one that reads nothing with memory.ErrFault, and
// any read of an exited process with procfs.ErrNoProcess.
func (p *Process) ReadAt(b []byte, addr uint64) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	// Bounded: every iteration either advances or returns.
	for n < len(b) {
		m, err := p.read(b[n:], addr+uint64(n))
		if m < 0 { // the raw system calls return -1 with an error
			m = 0
		}
		n += m
		if err != nil || m == 0 {
			return n, p.classify(n, addr+uint64(n), err)
		}
	}
	return n, nil
}

// maxIovecs is the kernel's IOV_MAX: the most ranges one
// process_vm_readv takes, on either side.
const maxIovecs = 1024

// ReadV implements memory.VectorReader: one process_vm_readv for up to
// 1024 segments. The kernel stops at the first range it cannot read; that
// one is read again alone (for its error) and the rest in a new call.
//
// Each range costs the kernel a lookup and a pinning of its pages, about
// as much as copying 5 KiB: a segment that starts at most len(p.gap)
// bytes after the previous one ends, on the same page or the next, is
// read as part of the same range, the bytes between going to p.gap.
// Every page such a range covers is one a segment covers, so it fails
// only where a segment alone would.
func (p *Process) ReadV(segs []memory.Segment) {
	p.mu.Lock()
	if p.mem != nil {
		p.mu.Unlock()
		memory.ReadEach(p, segs)
		return
	}
	for len(segs) > 0 {
		p.vlocal, p.vremote, p.vend = p.vlocal[:0], p.vremote[:0], p.vend[:0]
		want, i := 0, 0
		for ; i < len(segs); i++ {
			s := &segs[i]
			s.Err = nil
			if len(s.Buf) == 0 {
				p.vend = append(p.vend, want)
				continue
			}
			gap, join := p.joins(s)
			if len(p.vlocal)+2 > maxIovecs || (!join && len(p.vremote) >= maxIovecs) {
				break
			}
			if join {
				if gap > 0 {
					p.vlocal = append(p.vlocal, iovec(p.gap[:gap]))
					want += gap
				}
				p.vremote[len(p.vremote)-1].Len += gap + len(s.Buf)
			} else {
				p.vremote = append(p.vremote, unix.RemoteIovec{Base: uintptr(s.Addr), Len: len(s.Buf)})
			}
			p.vlocal = append(p.vlocal, iovec(s.Buf))
			want += len(s.Buf)
			p.vend = append(p.vend, want)
		}
		batch := segs[:i]
		n := 0
		if want > 0 {
			var err error
			n, err = unix.ProcessVMReadv(p.pid, p.vlocal, p.vremote, 0)
			if n < 0 || err != nil {
				n = 0
			}
		}
		for i := range p.vlocal {
			p.vlocal[i].Base = nil
		}
		// Segments wholly within the n bytes read are done; the first
		// one that is not is read alone, and the rest go again.
		done := len(batch)
		for i := range batch {
			if len(batch[i].Buf) > 0 && p.vend[i] > n {
				done = i
				break
			}
		}
		if done == len(batch) {
			segs = segs[len(batch):]
			continue
		}
		p.mu.Unlock()
		// Readable alone (mapped meanwhile), s.Err is nil.
		memory.ReadEach(p, segs[done:done+1])
		p.mu.Lock()
		segs = segs[done+1:]
	}
	p.mu.Unlock()
}

// joins reports whether segment s is read as part of the last range of
// p.vremote, and how many bytes lie between them.
func (p *Process) joins(s *memory.Segment) (gap int, ok bool) {
	if len(p.vremote) == 0 {
		return 0, false
	}
	r := p.vremote[len(p.vremote)-1]
	end := uint64(r.Base) + uint64(r.Len)
	if s.Addr < end || s.Addr-end > uint64(len(p.gap)) || s.Addr+uint64(len(s.Buf)) < s.Addr {
		return 0, false
	}
	const page = 4096
	if s.Addr/page > (end-1)/page+1 {
		return 0, false // a page between them that neither reads
	}
	return int(s.Addr - end), true
}

func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return v
}

func (p *Process) read(b []byte, addr uint64) (int, error) {
	if p.mem != nil {
		if addr > 1<<63-1 {
			return 0, unix.EIO
		}
		return unix.Pread(int(p.mem.Fd()), b, int64(addr))
	}
	p.local[0].Base = &b[0]
	p.local[0].SetLen(len(b))
	p.remote[0].Base = uintptr(addr)
	p.remote[0].Len = len(b)
	n, err := unix.ProcessVMReadv(p.pid, p.local[:], p.remote[:], 0)
	p.local[0].Base = nil
	if errors.Is(err, unix.ENOSYS) {
		if err := p.openMem(); err != nil {
			return 0, err
		}
		return p.read(b, addr)
	}
	return n, err
}

func (p *Process) classify(n int, addr uint64, err error) error {
	switch {
	case errors.Is(err, procfs.ErrNoProcess), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("reading process %d at %#x: %w", p.pid, addr, procfs.ErrNoProcess)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("reading process %d at %#x: %w", p.pid, addr, err)
	case n > 0:
		return fmt.Errorf("reading process %d at %#x: %w", p.pid, addr, memory.ErrShortRead)
	case p.mem != nil && err == nil:
		// pread returning 0 on /proc/PID/mem: the process has no mm
		// any more (it exited) or the address is past the end.
		if !procfs.New(p.pid).Exists() {
			return fmt.Errorf("reading process %d: %w", p.pid, procfs.ErrNoProcess)
		}
		return fmt.Errorf("reading process %d at %#x: %w", p.pid, addr, memory.ErrFault)
	default:
		return fmt.Errorf("reading process %d at %#x: %w", p.pid, addr, memory.ErrFault)
	}
}
