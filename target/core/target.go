package core

import (
	"debug/elf"
	"io"
	"os"
	"path/filepath"

	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// Target returns c as a target.Target: its memory, its threads from the
// NT_PRSTATUS notes (their state from the saved registers: the system
// call each was in, known on x86-64), its NT_FILE mappings with the
// build-ids the core recorded, its auxiliary vector, and its files
// opened as OpenFile does (under the sysroot, build-ids checked).
func (c *Core) Target() target.Target { return coreTarget{c} }

type coreTarget struct{ c *Core }

func (t coreTarget) PID() int                { return t.c.PID }
func (t coreTarget) Memory() memory.Reader   { return t.c }
func (t coreTarget) Machine() elf.Machine    { return t.c.Machine }
func (t coreTarget) Auxv() map[uint64]uint64 { return t.c.Auxv }

func (t coreTarget) Threads() []target.Thread {
	out := make([]target.Thread, 0, len(t.c.Threads))
	for _, th := range t.c.Threads {
		tt := target.Thread{TID: th.TID, NSTID: th.TID, TP: th.TP}
		// orig_rax is saved on x86-64 only.
		if t.c.Machine == elf.EM_X86_64 {
			tt.State = target.State{Kind: target.Running, Syscall: -1, Frozen: true}
			if th.Syscall >= 0 {
				tt.State = target.State{Kind: target.InSyscall, Syscall: th.Syscall, Args: th.Args, Frozen: true}
			}
		}
		out = append(out, tt)
	}
	return out
}

func (t coreTarget) Registers(tid int) ([]uint64, bool) {
	for _, th := range t.c.Threads {
		if th.TID == tid {
			return th.Regs, true
		}
	}
	return nil, false
}

func (t coreTarget) Mappings() ([]target.Mapping, error) {
	ids := map[string]string{}
	out := make([]target.Mapping, 0, len(t.c.Files))
	for _, f := range t.c.Files {
		id, ok := ids[f.Path]
		if !ok {
			id = t.c.BuildID(f.Path)
			ids[f.Path] = id
		}
		out = append(out, target.Mapping{Start: f.Start, End: f.End, Offset: f.Offset, Read: f.Read, Write: f.Write, Exec: f.Exec,
			Path: f.Path, TargetPath: f.Path, BuildID: id})
	}
	return out, nil
}

// OpenFile opens a mapped file as Core.OpenFile does; the core keeps it
// (and closes it with itself), so what is returned is no io.Closer.
func (t coreTarget) OpenFile(path string) (io.ReaderAt, error) {
	f, err := t.c.OpenFile(path)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(f, 0, 1<<62), nil
}

// OpenPath opens path under the sysroot, through Options.Open when given
// (which resolves it inside the sysroot), a regular file only.
func (t coreTarget) OpenPath(path string) (io.ReaderAt, error) {
	open := t.c.opts.Open
	if open == nil {
		open = func(path string) (*os.File, error) {
			return openRegular(filepath.Join(orRoot(t.c.opts.Sysroot), filepath.Clean("/"+path)))
		}
	}
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func orRoot(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}
