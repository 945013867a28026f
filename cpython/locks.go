package cpython

import (
	"fmt"
	"strings"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// Kinds of synchronisation objects SyncObject recognises.
const (
	SyncLock      = "Lock"      // _thread.lock (thread.lock on 2.7)
	SyncRLock     = "RLock"     // _thread.RLock, or threading's Python _RLock (2.7)
	SyncCondition = "Condition" // threading.Condition (_Condition on 2.7)
	SyncEvent     = "Event"
	SyncSemaphore = "Semaphore"
	SyncThread    = "Thread"
	SyncQueue     = "Queue"
)

// lockLayout is where the C lock objects of Modules/_threadmodule.c
// keep their state, as offsets after PyObject_HEAD. Checked on live
// interpreters by TestLockLayoutsLive.
type lockLayout struct {
	// sem: the PyThread_type_lock (a malloc'd sem_t*) of lockobject and
	// rlockobject (2.7–3.13); -1 when the lock is a PyMutex (3.14+).
	sem int
	// locked: lockobject.locked (char, 3.x ≤3.13) or the PyMutex byte
	// (3.14+, bit 0 set when locked); -1 on 2.7 (read from the sem_t).
	locked int
	// owner: rlockobject.rlock_owner (≤3.13) or _PyRecursiveMutex.thread
	// (3.14+): the owner's thread ident, 0 when free.
	owner int
}

// lockLayouts by minor version (3.x); 2.7 has no C RLock.
func lockLayoutFor(l *layout.Layout) lockLayout {
	switch {
	case l.Major < 3:
		return lockLayout{sem: 0, locked: -1, owner: -1}
	case l.Minor <= 13:
		// lockobject {lock_lock, in_weakreflist, locked};
		// rlockobject {rlock_lock, rlock_owner, rlock_count, ...}
		return lockLayout{sem: 0, locked: 16, owner: 8}
	default:
		// lockobject {PyMutex lock}; rlockobject {_PyRecursiveMutex
		// {PyMutex mutex; unsigned long long thread; size_t level}}
		return lockLayout{sem: -1, locked: 0, owner: 8}
	}
}

// Sync is a synchronisation object read from a target's memory.
type Sync struct {
	Addr uint64
	// Type is the object's tp_name; Kind one of the Sync* constants.
	Type, Kind string
	// Locked is 1 when a Lock or RLock is held, 0 when free, -1 unknown.
	Locked int
	// Owner is the thread ident (pthread_t, threading.get_ident()) of an
	// RLock's owner, 0 when free or unknown.
	Owner uint64
	// Futex is where a thread blocked acquiring this lock sleeps, for
	// locks built on a sem_t (2.7–3.13): the sem_t. Zero otherwise.
	Futex [2]uint64
	// ParkAddr is the address a thread blocked acquiring this lock parks
	// on (3.14+: the PyMutex), 0 otherwise.
	ParkAddr uint64
}

// sizeofSem bounds the sem_t a futex address must fall in.
const sizeofSem = 32

// SyncKind classifies a type name; "" for other objects.
func SyncKind(typeName string) string {
	switch shortTypeName(typeName) {
	case "lock", "LockType":
		return SyncLock
	case "RLock", "_RLock":
		return SyncRLock
	case "Condition", "_Condition":
		return SyncCondition
	case "Event", "_Event":
		return SyncEvent
	case "Semaphore", "_Semaphore", "BoundedSemaphore", "_BoundedSemaphore":
		return SyncSemaphore
	case "Thread", "_MainThread", "_DummyThread", "Timer", "_Timer":
		return SyncThread
	case "Queue", "LifoQueue", "PriorityQueue":
		return SyncQueue
	}
	return ""
}

// ReadSync reads the state of the synchronisation object at obj. An
// object of another kind is returned with Kind "".
func ReadSync(r memory.Reader, l *layout.Layout, obj uint64) (Sync, error) {
	return newDecoder(r, l).readSync(obj, 0)
}

func (d *decoder) readSync(obj uint64, depth int) (Sync, error) {
	t, err := d.typeOf(obj)
	if err != nil {
		return Sync{}, err
	}
	s := Sync{Addr: obj, Type: t.name, Kind: SyncKind(t.name), Locked: -1}
	head := uint64(d.l.SizeofPyObject)
	ll := lockLayoutFor(d.l)
	cLock := strings.Contains(t.name, "thread.") || t.name == "lock"
	switch {
	case s.Kind == SyncLock || s.Kind == SyncRLock && cLock:
		if ll.sem >= 0 {
			sem, err := memory.Ptr(d.r, obj+head+uint64(ll.sem))
			if err != nil {
				return s, fmt.Errorf("reading the lock's semaphore: %w", err)
			}
			if sem != 0 {
				s.Futex = [2]uint64{sem, sem + sizeofSem}
			}
		} else {
			s.ParkAddr = obj + head
		}
		if s.Kind == SyncRLock {
			if s.Owner, err = memory.U64(d.r, obj+head+uint64(ll.owner)); err != nil {
				return s, fmt.Errorf("reading the RLock's owner: %w", err)
			}
			s.Locked = 0
			if s.Owner != 0 {
				s.Locked = 1
			}
			return s, nil
		}
		switch {
		case ll.locked >= 0:
			b, err := memory.U8(d.r, obj+head+uint64(ll.locked))
			if err != nil {
				return s, fmt.Errorf("reading the lock's state: %w", err)
			}
			s.Locked = int(b & 1)
		case s.Futex[0] != 0:
			// glibc's sem_t: the value is the low 32 bits of its first
			// word; 0 means taken.
			v, err := memory.U32(d.r, s.Futex[0])
			if err == nil {
				s.Locked = 0
				if v == 0 {
					s.Locked = 1
				}
			}
		}
	case s.Kind == SyncRLock && depth == 0:
		// threading's Python _RLock (2.7, or 3.x without _thread.RLock):
		// _block is a lock, _owner the owner's ident or None.
		prefix := "_"
		if d.l.Major < 3 {
			prefix = "_RLock__"
		}
		if blk, err := d.attr(obj, prefix+"block"); err == nil {
			if b, err := d.readSync(blk, depth+1); err == nil {
				s.Futex, s.ParkAddr, s.Locked = b.Futex, b.ParkAddr, b.Locked
			}
		}
		if own, err := d.attr(obj, prefix+"owner"); err == nil {
			if t, err := d.typeOf(own); err == nil && t.name != "NoneType" {
				if v, err := d.intValue(own, t); err == nil && v.IsUint64() {
					s.Owner = v.Uint64()
				}
			}
		}
	}
	return s, nil
}

// attr reads an instance attribute.
func (d *decoder) attr(obj uint64, name string) (uint64, error) {
	items, err := d.instanceItems(obj)
	if err != nil {
		return 0, err
	}
	return d.findKey(items, name)
}

// AttrNameOf returns the name of an instance attribute of obj whose
// value is target, "" when there is none.
func AttrNameOf(r memory.Reader, l *layout.Layout, obj, target uint64) string {
	d := newDecoder(r, l)
	items, err := d.instanceItems(obj)
	if err != nil {
		return ""
	}
	for _, it := range items {
		if it.Value == target {
			if s, err := d.str(it.Key, MaxNameLen); err == nil {
				return s
			}
		}
	}
	return ""
}

// ParkedAt returns the address a thread parked in CPython's parking lot
// (3.14+) waits on, given the futex its semaphore sleeps on: the futex
// is wait_entry.sema (Python/parking_lot.c: struct wait_entry {void
// *park_arg; uintptr_t addr; _PySemaphore sema; ...}), so addr is the
// word before it. ok is false before 3.14.
func ParkedAt(r memory.Reader, l *layout.Layout, futex uint64) (addr uint64, ok bool) {
	if l.Major < 3 || l.Minor < 14 || futex < 8 {
		return 0, false
	}
	a, err := memory.U64(r, futex-8)
	return a, err == nil && a != 0
}

// ParkedObject returns the object whose PyMutex is at addr (ParkedAt):
// the mutex follows PyObject_HEAD in _thread.lock and _thread.RLock.
func ParkedObject(l *layout.Layout, addr uint64) uint64 {
	return addr - uint64(l.SizeofPyObject)
}

// How a frame refers to an object (FrameRef.Via).
const (
	ViaLocal  = "local"  // a local variable
	ViaStack  = "stack"  // the value stack
	ViaExit   = "with"   // a bound __exit__ on the value stack: a with block
	ViaMethod = "method" // another bound method of the object
)

// FrameRef is an object a frame refers to.
type FrameRef struct {
	// Name is the local variable's name ("" on the value stack).
	Name string
	Via  string
	Obj  uint64
}

// maxStackSlots bounds the value-stack slots FrameRefs reads.
const maxStackSlots = 512

// FrameRefs returns the objects the frame f refers to from its local
// variables and its value stack, a bound method (the __exit__ of a with
// block, or obj.acquire) replaced by the object it is bound to. The value
// stack is read up to co_stacksize: slots above the live top may hold
// stale pointers (popped values), so a reference from the value stack is
// evidence, not proof.
func FrameRefs(r memory.Reader, l *layout.Layout, f Frame) ([]FrameRef, error) {
	return NewRefReader(r, l).Refs(f)
}

// RefReader reads the references of many frames of one snapshot,
// decoding each code object and type once.
type RefReader struct{ d *decoder }

// NewRefReader returns a RefReader over r.
func NewRefReader(r memory.Reader, l *layout.Layout) *RefReader {
	return &RefReader{d: newDecoder(r, l)}
}

// Refs is FrameRefs.
func (rr *RefReader) Refs(f Frame) ([]FrameRef, error) {
	d, l := rr.d, rr.d.l
	c, err := d.code(f.Code)
	if err != nil {
		return nil, err
	}
	if err := d.localNames(c); err != nil {
		return nil, err
	}
	ss, err := memory.I32(d.r, f.Code+uint64(l.CodeCoStacksize))
	if err != nil {
		return nil, fmt.Errorf("reading co_stacksize: %w", err)
	}
	stack := int(min(max(ss, 0), maxStackSlots))
	slots := f.Addr + uint64(l.InterpFrameLocalsplus)
	if l.Major < 3 || l.Minor <= 10 {
		slots = f.Addr + uint64(l.FrameFLocalsplus)
	}
	n := len(c.localNames)
	vals, err := d.ptrArray(slots, n+stack)
	if err != nil {
		// The stack may end the mapping: the locals alone.
		if vals, err = d.ptrArray(slots, n); err != nil {
			return nil, fmt.Errorf("reading locals: %w", err)
		}
	}
	var out []FrameRef
	exitNext := false // 3.14+: the slot after an unbound __exit__ is its self
	for i, v := range vals {
		if l.Major == 3 && l.Minor >= 14 {
			if v&3 == 3 {
				continue
			}
			v &^= 7
		}
		if v == 0 || v < 4096 {
			continue
		}
		ref := FrameRef{Via: ViaStack, Obj: v}
		if i < n {
			ref.Name, ref.Via = c.localNames[i], ViaLocal
			if c.localKinds[i]&(coFastCell|coFastFree) != 0 {
				if t, err := d.typeOf(v); err == nil && t.name == "cell" {
					if v, err = memory.Ptr(d.r, v+uint64(l.SizeofPyObject)); err != nil || v == 0 {
						continue
					}
					ref.Obj = v
				}
			}
		}
		t, err := d.typeOf(ref.Obj)
		if err != nil {
			exitNext = false
			continue
		}
		if exitNext && ref.Via == ViaStack {
			ref.Via = ViaExit
		}
		exitNext = false
		switch t.name {
		case "method_descriptor", "function":
			exitNext = ref.Via == ViaStack && d.unboundName(ref.Obj, t.name) == "__exit__"
			continue
		case "method", "instancemethod", "builtin_function_or_method":
			// PyMethodObject {im_func, im_self}, PyCFunctionObject {m_ml,
			// m_self}: the self after one pointer.
			self, err := memory.Ptr(d.r, ref.Obj+uint64(l.SizeofPyObject)+8)
			if err != nil || self == 0 {
				continue
			}
			name := d.methodName(ref.Obj, t.name)
			ref.Obj = self
			if ref.Via == ViaStack {
				ref.Via = ViaMethod
				if name == "__exit__" || name == "release" {
					ref.Via = ViaExit
				}
			}
		}
		out = append(out, ref)
	}
	return out, nil
}

// methodName returns the name of a bound method object, "" if unknown.
func (d *decoder) methodName(m uint64, typeName string) string {
	head := uint64(d.l.SizeofPyObject)
	if typeName == "builtin_function_or_method" {
		// m_ml -> PyMethodDef {const char *ml_name, ...}
		ml, err := memory.NonNullPtr(d.r, m+head)
		if err != nil {
			return ""
		}
		np, err := memory.NonNullPtr(d.r, ml)
		if err != nil {
			return ""
		}
		s, _ := memory.CString(d.r, np, MaxNameLen)
		return s
	}
	// im_func -> a function: its code's name.
	fn, err := memory.NonNullPtr(d.r, m+head)
	if err != nil {
		return ""
	}
	return d.funcName(fn)
}

// funcName returns the name of the code of a function object.
func (d *decoder) funcName(fn uint64) string {
	off := uint64(d.l.SizeofPyObject) // func_code first (≤3.9)
	if d.l.Major == 3 && d.l.Minor >= 10 {
		off += 4 * 8 // after func_globals, func_builtins, func_name, func_qualname
	}
	code, err := memory.NonNullPtr(d.r, fn+off)
	if err != nil {
		return ""
	}
	if t, err := d.typeOf(code); err != nil || !d.isCode(t) {
		return ""
	}
	c, err := d.code(code)
	if err != nil {
		return ""
	}
	return c.Name
}

// unboundName returns the name of a method descriptor or a function.
func (d *decoder) unboundName(obj uint64, typeName string) string {
	if typeName == "function" {
		return d.funcName(obj)
	}
	// PyDescr_COMMON: d_type, d_name.
	name, err := memory.NonNullPtr(d.r, obj+uint64(d.l.SizeofPyObject)+8)
	if err != nil {
		return ""
	}
	s, _ := d.str(name, MaxNameLen)
	return s
}

// ClassName returns the name of obj's class: its type's name, or for an
// instance of a 2.7 old-style class (type "instance") the class's name
// (PyInstanceObject.in_class -> PyClassObject.cl_name).
func ClassName(r memory.Reader, l *layout.Layout, obj uint64) (string, error) {
	d := newDecoder(r, l)
	t, err := d.typeOf(obj)
	if err != nil {
		return "", err
	}
	if l.Major >= 3 || t.name != "instance" {
		return t.name, nil
	}
	head := uint64(l.SizeofPyObject)
	cls, err := memory.NonNullPtr(r, obj+head)
	if err != nil {
		return "", fmt.Errorf("reading in_class: %w", err)
	}
	name, err := memory.NonNullPtr(r, cls+head+16) // after cl_bases, cl_dict
	if err != nil {
		return "", fmt.Errorf("reading cl_name: %w", err)
	}
	return d.str(name, MaxNameLen)
}

// DequeLen returns len() of a collections.deque: Py_SIZE on 3.x (a
// PyVarObject), the len field after the block pointers and indexes on
// 2.7 (Modules/_collectionsmodule.c).
func DequeLen(r memory.Reader, l *layout.Layout, obj uint64) (int, error) {
	d := newDecoder(r, l)
	t, err := d.typeOf(obj)
	if err != nil {
		return 0, err
	}
	if shortTypeName(t.name) != "deque" {
		return 0, fmt.Errorf("object at %#x has type %q, not deque: %w", obj, t.name, ErrWrongType)
	}
	off := uint64(l.VarObjectObSize)
	if l.Major < 3 {
		off = uint64(l.SizeofPyObject) + 4*8
	}
	n, err := memory.I64(r, obj+off)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > 1<<40 {
		return 0, fmt.Errorf("deque length %d: %w", n, memory.ErrTooLarge)
	}
	return int(n), nil
}

// InstanceAttr is AttrGet that also reads the attributes of a 2.7
// old-style instance (type "instance": PyInstanceObject {in_class,
// in_dict}).
func InstanceAttr(r memory.Reader, l *layout.Layout, obj uint64, name string) (uint64, error) {
	if l.Major < 3 {
		d := newDecoder(r, l)
		if t, err := d.typeOf(obj); err == nil && t.name == "instance" {
			dict, err := memory.NonNullPtr(r, obj+uint64(l.SizeofPyObject)+8)
			if err != nil {
				return 0, fmt.Errorf("reading in_dict: %w", err)
			}
			return d.dictGet(dict, name)
		}
	}
	return AttrGet(r, l, obj, name)
}
