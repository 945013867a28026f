package inspect

import (
	"debug/elf"
	"fmt"
	"io"
	pathpkg "path"
	"strings"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/unwind"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// nativeMapping is one mapping of a file (or of the vDSO), from
// /proc/PID/maps or a core's NT_FILE note.
type nativeMapping struct {
	Start, End, Offset uint64
	Exec               bool
	Path               string
}

// nativeView unwinds and names the native frames of one address space:
// the modules (executable mappings with their .eh_frame_hdr, read from
// memory) and, opened once each, the files that name their functions.
type nativeView struct {
	arch  unwind.Arch
	mods  []unwind.Module
	files map[string]*symFile
	open  func(path string) (io.ReaderAt, error)
	// openDebug opens a file of the target's filesystem (inside its root
	// or the core's sysroot) for separate debug files; nil: none.
	openDebug func(path string) (io.ReaderAt, error)
	// targetPath turns a mapping's path into the path as the target
	// sees it (for openDebug); nil: the same.
	targetPath func(path string) string
	closers    []io.Closer
	r          memory.Reader
	// u unwinds every thread read through ur: the CFI it has parsed
	// (.eh_frame_hdr tables, CIEs, FDEs) serves all of them, so the pause
	// pays for it once, not once per thread.
	u     *unwind.Unwinder
	ur    memory.Reader
	maps  map[string][]elfsym.Mapping
	bases map[string]uint64
	// interp holds the paths (as the frames name them) of the
	// interpreter's files: libpython and the python executable, whose
	// frames between the Python ones are hidden unless NativeAll.
	interp map[string]bool
	// dframes holds, by path, the parsed .debug_frame of the files (nil:
	// none), read before the pause (liveNativeView) or when a walk first
	// needs it.
	dframes map[string]*unwind.DebugFrame
	// dframeBytes counts the .debug_frame bytes read (maxDebugFrameTotal).
	dframeBytes uint64
}

// symFile is an opened ELF file and its load bias.
type symFile struct {
	c    io.Closer    // the opened file, nil for the vDSO
	e    *elfsym.File // the file
	dbg  *elfsym.File // its debug symbols (separate file or MiniDebugInfo), or nil
	bias uint64
	err  error
	// sep is its separate debug file (by build-id or .gnu_debuglink),
	// looked up once (sepDone).
	sep     *elfsym.File
	sepDone bool
	symDone bool // dbg was looked for
}

// maxDebugFrameTotal bounds the .debug_frame bytes one view reads, all
// files together (a hostile target may map many files with big ones).
const maxDebugFrameTotal = 256 << 20

// maxNativeModules bounds the modules read from a hostile mapping list.
const maxNativeModules = 4096

// vdsoPath is the name /proc/PID/maps gives the vDSO.
const vdsoPath = "[vdso]"

// newNativeView lists the modules of maps; their headers are read from r.
func newNativeView(r memory.Reader, arch unwind.Arch, maps []nativeMapping, open func(string) (io.ReaderAt, error)) *nativeView {
	v := &nativeView{arch: arch, files: map[string]*symFile{}, open: open, r: r, maps: map[string][]elfsym.Mapping{}, bases: map[string]uint64{}, interp: map[string]bool{}, dframes: map[string]*unwind.DebugFrame{}}
	for _, m := range maps {
		if m.Path == "" || (!strings.HasPrefix(m.Path, "/") && m.Path != vdsoPath) {
			continue
		}
		if _, ok := v.bases[m.Path]; !ok && m.Offset == 0 {
			v.bases[m.Path] = m.Start
		}
		v.maps[m.Path] = append(v.maps[m.Path], elfsym.Mapping{Start: m.Start, End: m.End, Offset: m.Offset, Read: true, Exec: m.Exec})
	}
	// A core written by gcore does not say which mappings are
	// executable (its NT_FILE has no permissions): then every mapping of
	// the file is a module.
	hasExec := map[string]bool{}
	for _, m := range maps {
		hasExec[m.Path] = hasExec[m.Path] || m.Exec
	}
	hdrs := map[string]uint64{}
	for _, m := range maps {
		base, ok := v.bases[m.Path]
		if (!m.Exec && hasExec[m.Path]) || !ok || len(v.mods) >= maxNativeModules {
			continue
		}
		hdr, seen := hdrs[m.Path]
		if !seen {
			hdr, _ = unwind.FindEhFrameHdr(r, base)
			hdrs[m.Path] = hdr
		}
		mod := unwind.Module{Start: m.Start, End: m.End, Base: base, EhFrameHdr: hdr, Path: m.Path}
		if m.Path != vdsoPath {
			path := m.Path
			mod.DebugFrame = func() *unwind.DebugFrame { return v.debugFrame(path) }
		}
		v.mods = append(v.mods, mod)
	}
	return v
}

// debugFrame returns the parsed .debug_frame of the file of path, from
// the file itself or else from its separate debug file; nil when
// neither has one (or it cannot be read). Read once per view.
func (v *nativeView) debugFrame(path string) *unwind.DebugFrame {
	if df, ok := v.dframes[path]; ok {
		return df
	}
	v.dframes[path] = nil
	sf := v.file(path)
	if sf.err != nil {
		return nil
	}
	limit := min(unwind.MaxDebugFrame, maxDebugFrameTotal-v.dframeBytes)
	b, err := sf.e.SectionData(".debug_frame", limit)
	if err != nil {
		sep := v.separate(path, sf)
		if sep == nil {
			return nil
		}
		if b, err = sep.SectionData(".debug_frame", limit); err != nil {
			return nil
		}
	}
	v.dframeBytes += uint64(len(b))
	// The FDEs read before a malformed record are kept.
	df, _ := unwind.ParseDebugFrame(b, sf.bias)
	if df.Len() == 0 {
		return nil
	}
	v.dframes[path] = df
	return df
}

// nativeViewOf is the native view of t: the modules of its mappings
// (their headers read from its memory), its files opened as t opens them
// (a live process's as it sees them, a core's under the sysroot with
// their build-ids checked), separate debug files looked for in its
// filesystem. py and exe name (as the target sees them) the interpreter
// and the main program, whose frames are the interpreter's.
func nativeViewOf(t target.Target, py, exe string) (*nativeView, error) {
	maps, err := t.Mappings()
	if err != nil {
		return nil, err
	}
	arch := unwind.AMD64
	if t.Machine() == elf.EM_AARCH64 {
		arch = unwind.ARM64
	}
	nm := make([]nativeMapping, 0, len(maps))
	names := map[string]string{}
	for _, m := range maps {
		nm = append(nm, nativeMapping{Start: m.Start, End: m.End, Offset: m.Offset, Exec: m.Exec, Path: m.Path})
		names[m.Path] = m.TargetPath
	}
	v := newNativeView(t.Memory(), arch, nm, t.OpenFile)
	v.openDebug = t.OpenPath
	v.targetPath = func(path string) string {
		if tp, ok := names[path]; ok {
			return tp
		}
		return path
	}
	for path, tp := range names {
		// Maps name a chrooted target's files with its root's prefix.
		if tp == py || (tp == exe && tp != "") {
			v.interp[path] = true
		}
	}
	return v, nil
}

// liveNativeView is the native view of a live process, with the
// .debug_frame of its files read now, before the pause: that of a file
// that has one, or that has no .eh_frame_hdr (then its debug file's);
// only a file with .eh_frame_hdr but no .debug_frame of its own has its
// debug file looked for during the pause, when a pc .eh_frame does not
// cover needs it.
func (p *Live) liveNativeView(t target.Target) (*nativeView, error) {
	exe := ""
	if p.Proc != nil {
		exe = p.Proc.Exe
	}
	v, err := nativeViewOf(t, p.Py.Path, exe)
	if err != nil {
		return nil, err
	}
	for _, m := range v.mods {
		if m.DebugFrame == nil {
			continue
		}
		if f := v.file(m.Path); m.EhFrameHdr == 0 || f.err == nil && f.e.HasSection(".debug_frame") {
			m.DebugFrame()
		}
	}
	return v, nil
}

// close closes the files opened to name functions.
func (v *nativeView) close() {
	for _, f := range v.files {
		if f.c != nil {
			f.c.Close()
		}
	}
	for _, c := range v.closers {
		c.Close()
	}
}

// nativeStack is a thread's unwound stack, innermost first, before names.
type nativeStack struct {
	frames []unwind.Frame
	mods   []unwind.Module
	err    error
}

// unwindThread walks over r (while the thread is paused, or from a
// core) the native stack of a thread whose general registers are words
// (laid out as in NT_PRSTATUS).
func (v *nativeView) unwindThread(r memory.Reader, words []uint64) nativeStack {
	regs, err := unwind.FromPrstatus(v.arch, words)
	if err != nil {
		return nativeStack{err: err}
	}
	if v.u == nil || v.ur != r {
		v.u, v.ur = unwind.New(r, v.arch, v.mods), r
	}
	frames, err := v.u.Unwind(regs, 0)
	return nativeStack{frames: frames, mods: v.u.Modules(), err: err}
}

// symbols opens (once) the file of path, computes its load bias and
// finds its debug symbols when it has no .symtab.
func (v *nativeView) symbols(path string) *symFile {
	f := v.file(path)
	if f.err != nil || f.symDone {
		return f
	}
	f.symDone = true
	if !f.e.HasSymtab() {
		f.dbg = v.separate(path, f)
		if f.dbg == nil {
			if d, err := f.e.MiniDebugInfo(); err == nil && d.HasSymtab() {
				f.dbg = d
			}
		}
	}
	return f
}

// file opens (once) the file of path and computes its load bias; its
// debug symbols are looked for by symbols.
func (v *nativeView) file(path string) *symFile {
	if f, ok := v.files[path]; ok {
		return f
	}
	f := &symFile{}
	v.files[path] = f
	var ra io.ReaderAt
	if path == vdsoPath {
		ms := v.maps[path]
		if len(ms) == 0 {
			f.err = fmt.Errorf("no vDSO")
			return f
		}
		ra = memory.Section(v.r, ms[0].Start, ms[len(ms)-1].End-ms[0].Start)
	} else {
		if v.open == nil {
			f.err = fmt.Errorf("no file opener")
			return f
		}
		if ra, f.err = v.open(path); f.err != nil {
			return f
		}
		f.c, _ = ra.(io.Closer)
	}
	if f.e, f.err = elfsym.Open(ra); f.err != nil {
		return f
	}
	f.bias, f.err = f.e.Bias(v.maps[path])
	return f
}

// separate returns the separate debug file of f (mapped from path),
// found by build-id or else by .gnu_debuglink, looked up once.
func (v *nativeView) separate(path string, f *symFile) *elfsym.File {
	if !f.sepDone {
		f.sepDone = true
		f.sep = v.debugFile(f.e.BuildID())
		if f.sep == nil {
			f.sep = v.debugLinkFile(path, f.e)
		}
	}
	return f.sep
}

// debugDir is where separate debug files are found by build-id.
const debugDir = "/usr/lib/debug/.build-id/"

// debugFile opens the separate debug file of build-id id (as Debian's
// -dbg and -dbgsym packages install them), when it is there and is that
// build's: its .symtab names the static functions a stripped file does
// not.
func (v *nativeView) debugFile(id string) *elfsym.File {
	if v.openDebug == nil || len(id) < 4 {
		return nil
	}
	ra, d := v.openDebugELF(debugDir + id[:2] + "/" + id[2:] + ".debug")
	if ra == nil || d.BuildID() != id {
		return nil
	}
	return d
}

// openDebugELF opens path, a file of the target's filesystem, as an ELF
// file with a .symtab (nils when it is not one); it is closed with v.
func (v *nativeView) openDebugELF(path string) (io.ReaderAt, *elfsym.File) {
	ra, err := v.openDebug(path)
	if err != nil {
		return nil, nil
	}
	if c, ok := ra.(io.Closer); ok {
		v.closers = append(v.closers, c)
	}
	d, err := elfsym.Open(ra)
	if err != nil || !d.HasSymtab() {
		return nil, nil
	}
	return ra, d
}

// debugLinkFile opens the separate debug file that e's .gnu_debuglink
// names (e mapped from path), where gdb looks for it: beside the file,
// in its directory's .debug, and under /usr/lib/debug followed by its
// directory; used only when its CRC-32 is the one recorded (and its
// build-id, when both have one, e's).
func (v *nativeView) debugLinkFile(path string, e *elfsym.File) *elfsym.File {
	name, crc, ok := e.DebugLink()
	if !ok || v.openDebug == nil || !strings.HasPrefix(path, "/") {
		return nil
	}
	if v.targetPath != nil {
		path = v.targetPath(path)
	}
	dir := pathpkg.Dir(path)
	for _, cand := range []string{pathpkg.Join(dir, name), pathpkg.Join(dir, ".debug", name), pathpkg.Join("/usr/lib/debug", dir, name)} {
		if cand == path {
			continue
		}
		ra, d := v.openDebugELF(cand)
		if ra == nil {
			continue
		}
		if c, err := elfsym.CRC32(ra); err != nil || c != crc {
			continue
		}
		if id, want := d.BuildID(), e.BuildID(); id != "" && want != "" && id != want {
			continue
		}
		return d
	}
	return nil
}

// name gives the frames of s, outermost first, as Frames.
func (v *nativeView) name(s nativeStack) []Frame {
	out := make([]Frame, 0, len(s.frames))
	for i := len(s.frames) - 1; i >= 0; i-- {
		f := s.frames[i]
		fr := Frame{Native: true, Address: f.PC, spLo: f.SP, spHi: ^uint64(0)}
		if i+1 < len(s.frames) {
			fr.spHi = s.frames[i+1].SP
		}
		if f.Module >= 0 && f.Module < len(s.mods) {
			m := s.mods[f.Module]
			fr.File = m.Path
			fr.Offset = f.PC - m.Base
			sf := v.symbols(m.Path)
			if sf.err == nil {
				pc := f.LookupPC(i)
				name, off, ok := "", uint64(0), false
				if sf.dbg != nil {
					name, off, ok = sf.dbg.FuncAt(pc - sf.bias)
				}
				if !ok {
					name, off, ok = sf.e.FuncAt(pc - sf.bias)
				}
				if ok {
					fr.Function, fr.Offset = elfsym.Demangle(name), off+(f.PC-pc)
				} else {
					fr.Offset = f.PC - sf.bias // the file's own address (addr2line's)
				}
			}
		}
		out = append(out, fr)
	}
	return out
}

// nativeNote says why a native walk stopped early, when it did.
func nativeNote(s nativeStack) string {
	if s.err == nil {
		return ""
	}
	return "native stack cut short: " + s.err.Error()
}

// isEvalFrame reports whether a native function runs Python frames: the
// evaluation loop (and its cold part; PyEval_EvalFrameEx on 2.7).
func isEvalFrame(fn string, major int) bool {
	base, _, _ := strings.Cut(fn, ".")
	if major < 3 {
		return base == "PyEval_EvalFrameEx"
	}
	return base == "_PyEval_EvalFrameDefault"
}

// isTailCall reports whether a native function is one of the
// instruction handlers of a tail-calling evaluation loop (3.14+, built
// with clang): part of the _PyEval_EvalFrameDefault call below it.
func isTailCall(fn string) bool { return strings.HasPrefix(fn, "_TAIL_CALL_") }

// mergeNative merges a thread's Python frames py with its native frames
// nat (both outermost first): each call of the evaluation loop is
// replaced by the Python frames it runs (a group starting at an Entry
// frame). When the two cannot be lined up (a thread entering or leaving
// the loop, a frame the unwinder missed), the Python frames are kept as
// they are and the native ones returned apart, with a note.
func mergeNative(py []Frame, nat []Frame, major int) (merged, apart []Frame, note string) {
	// The Python calls: groups of frames, each starting at an entry.
	var groups [][]Frame
	for _, f := range py {
		if len(groups) == 0 || f.entry {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], f)
	}
	if m, ok := mergeByShims(groups, nat, major); ok {
		return m, nil, ""
	}
	evals := 0
	for _, f := range nat {
		if isEvalFrame(f.Function, major) {
			evals++
		}
	}
	if evals != len(groups) {
		return py, nat, fmt.Sprintf("native and Python frames do not line up (%d calls of the evaluation loop, %d Python calls): shown apart", evals, len(groups))
	}
	merged = make([]Frame, 0, len(py)+len(nat))
	g := 0
	for i, f := range nat {
		switch {
		case isEvalFrame(f.Function, major):
			merged = append(merged, groups[g]...)
			g++
		case isTailCall(f.Function) && i > 0 && (isEvalFrame(nat[i-1].Function, major) || isTailCall(nat[i-1].Function)):
			// A handler of the evaluation loop: shown as its frames.
		default:
			merged = append(merged, f)
		}
	}
	return merged, nil, ""
}

// unwindAll unwinds, over r, the native stack of every thread of dump
// whose registers t knows (a live process's while it is held).
func (v *nativeView) unwindAll(r memory.Reader, t target.Target, dump *StackDump) map[int]nativeStack {
	out := map[int]nativeStack{}
	for _, th := range dump.Threads {
		if th.TID == 0 {
			continue
		}
		if _, done := out[th.TID]; done {
			continue
		}
		words, ok := t.Registers(th.TID)
		if !ok {
			continue
		}
		out[th.TID] = v.unwindThread(r, words)
	}
	return out
}

// addNative names the native stacks and merges them into dump's threads;
// unless all, the interpreter's own frames between the Python ones are
// hidden (hideInterp).
func addNative(dump *StackDump, v *nativeView, stacks map[int]nativeStack, major int, all bool) {
	for i := range dump.Threads {
		t := &dump.Threads[i]
		s, ok := stacks[t.TID]
		switch {
		case v == nil:
			t.NativeNote = "native frames are read only while the threads are paused"
			continue
		case !ok || t.TID == 0:
			t.NativeNote = "no registers for this thread"
			continue
		}
		nat := v.name(s)
		var note string
		t.Frames, t.NativeApart, note = mergeNative(t.Frames, nat, major)
		if !all {
			t.Frames = hideInterp(t.Frames, v.interp)
		}
		t.NativeNote = strings.Join(nonEmpty(nativeNote(s), note), "; ")
	}
}

// hideInterp drops from a merged stack (outermost first) the native
// frames of the interpreter's files (interp: libpython, the python
// executable) that come before its innermost Python frame: what runs
// the Python frames, not what the thread is doing. The frames after the
// innermost Python frame are all kept (the thread's own C calls, even
// the interpreter's: time.sleep's, the GIL wait), and so are the other
// files' frames (libc, extensions, ctypes, libffi) and the frames of a
// thread without Python frames.
func hideInterp(frames []Frame, interp map[string]bool) []Frame {
	last := -1
	for i, f := range frames {
		if !f.Native {
			last = i
		}
	}
	if last < 0 || len(interp) == 0 {
		return frames
	}
	out := frames[:0:0]
	for i, f := range frames {
		if f.Native && i < last && interp[f.File] {
			continue
		}
		out = append(out, f)
	}
	return out
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// mergeByShims merges by where each Python call's entry frame lives
// (3.12+): in the C stack frame of the evaluation loop call that runs it,
// whatever that function is named (a stripped interpreter names none).
// False unless every call has one, each in its own native frame, in
// order.
func mergeByShims(groups [][]Frame, nat []Frame, major int) ([]Frame, bool) {
	at := make(map[int]int, len(groups)) // native frame -> group
	next := 0
	for g, grp := range groups {
		shim := grp[0].shim
		if shim == 0 {
			return nil, false
		}
		k := next
		for k < len(nat) && !(nat[k].spLo <= shim && shim < nat[k].spHi) {
			k++
		}
		if k == len(nat) {
			return nil, false
		}
		at[k] = g
		next = k + 1
	}
	merged := make([]Frame, 0, len(nat))
	for i, f := range nat {
		if g, ok := at[i]; ok {
			merged = append(merged, groups[g]...)
			continue
		}
		if isTailCall(f.Function) && i > 0 {
			continue
		}
		merged = append(merged, f)
	}
	return merged, true
}

// addOtherThreads adds to dump the tasks of tids that no Python thread
// runs on, named and described by about (NativeAll).
func addOtherThreads(dump *StackDump, tids []int, about func(tid int) (name, state string)) {
	known := map[int]bool{}
	for _, t := range dump.Threads {
		known[t.TID] = true
	}
	for _, tid := range tids {
		if known[tid] || tid == 0 {
			continue
		}
		known[tid] = true
		name, state := about(tid)
		dump.Threads = append(dump.Threads, ThreadStack{TID: tid, Name: name, State: state, Frames: []Frame{}, NotPython: true})
	}
}
