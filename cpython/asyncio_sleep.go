package cpython

import (
	"fmt"
	"math"
	"strings"

	"github.com/pyglass/pyglass/memory"
)

// sleepDeadline returns the loop time (seconds of the loop's clock,
// time.monotonic() for asyncio's loops) at which a task suspended in
// asyncio.sleep wakes: the _when of the TimerHandle that sleep keeps in
// its local h (asyncio/tasks.py: h = loop.call_later(delay, ...); await
// future).
func (s *asyncState) sleepDeadline(stack []Frame) (when float64, err error) {
	f, ok := innermostAsync(stack)
	if !ok || f.Function != "sleep" || !strings.HasSuffix(f.File, "tasks.py") {
		return 0, fmt.Errorf("not in asyncio.sleep: %w", ErrWrongType)
	}
	h, err := s.d.frameLocal(f, "h")
	if err != nil {
		return 0, fmt.Errorf("reading sleep's timer handle: %w", err)
	}
	t, err := s.d.typeOf(h)
	if err != nil {
		return 0, err
	}
	if t.name != "TimerHandle" {
		return 0, fmt.Errorf("sleep's h is a %q, not a TimerHandle: %w", t.name, ErrWrongType)
	}
	at, ok := s.whenSlot[t.addr]
	if !ok {
		if at, err = s.d.slotOffset(t, "_when"); err != nil {
			return 0, fmt.Errorf("finding TimerHandle._when: %w", err)
		}
		s.whenSlot[t.addr] = at
	}
	v, err := memory.NonNullPtr(s.d.r, h+at)
	if err != nil {
		return 0, fmt.Errorf("reading TimerHandle._when: %w", err)
	}
	if ft, err := s.d.typeOf(v); err != nil || ft.name != "float" {
		return 0, fmt.Errorf("TimerHandle._when is not a float: %w", ErrWrongType)
	}
	when, err = s.d.floatValue(v)
	if err != nil {
		return 0, fmt.Errorf("reading TimerHandle._when: %w", err)
	}
	if math.IsNaN(when) || math.IsInf(when, 0) {
		return 0, fmt.Errorf("TimerHandle._when is %v: %w", when, ErrWrongType)
	}
	return when, nil
}

// frameLocal returns the object in the fast local called name of the
// suspended frame f (a frame object up to 3.10, an interpreter frame
// after).
func (d *decoder) frameLocal(f Frame, name string) (uint64, error) {
	c, err := d.code(f.Code)
	if err != nil {
		return 0, err
	}
	if err := d.localNames(c); err != nil {
		return 0, err
	}
	i := -1
	for j, n := range c.localNames {
		if n == name && c.localKinds[j]&(coFastCell|coFastFree|coFastHidden) == 0 {
			i = j
			break
		}
	}
	if i < 0 {
		return 0, fmt.Errorf("no local %q: %w", name, ErrKeyNotFound)
	}
	slots := f.Addr + uint64(d.l.InterpFrameLocalsplus)
	if d.l.Major < 3 || d.l.Minor <= 10 {
		slots = f.Addr + uint64(d.l.FrameFLocalsplus)
	}
	v, err := memory.Ptr(d.r, slots+8*uint64(i))
	if err != nil {
		return 0, err
	}
	if d.l.Major == 3 && d.l.Minor >= 14 {
		if v&3 == 3 {
			return 0, fmt.Errorf("local %q is a tagged int: %w", name, ErrWrongType)
		}
		v &^= 7
	}
	if v == 0 {
		return 0, fmt.Errorf("local %q is unbound: %w", name, memory.ErrNull)
	}
	return v, nil
}

// maxSlotOffset bounds the offset of a __slots__ member in its object.
const maxSlotOffset = 1 << 16

// slotOffset returns the offset, in objects of type t, of the __slots__
// member name declared by t itself: the member descriptor in t's dict
// (PyMemberDescrObject: PyDescr_COMMON, then d_member, a PyMemberDef
// {name, type, offset, ...}) gives it.
func (d *decoder) slotOffset(t *typeInfo, name string) (uint64, error) {
	off := d.l.TypeTpDictoffset - 24 // tp_dict (see classModule)
	if off <= 0 || t.flags&tpflagsHeapType == 0 {
		return 0, fmt.Errorf("type %q: %w", t.name, ErrWrongType)
	}
	dict, err := memory.NonNullPtr(d.r, t.addr+uint64(off))
	if err != nil {
		return 0, err
	}
	desc, err := d.dictGet(dict, name)
	if err != nil {
		return 0, err
	}
	dt, err := d.typeOf(desc)
	if err != nil {
		return 0, err
	}
	if dt.name != "member_descriptor" {
		return 0, fmt.Errorf("%s.%s is a %q, not a slot: %w", t.name, name, dt.name, ErrWrongType)
	}
	def, err := memory.NonNullPtr(d.r, desc+uint64(d.l.SizeofPyObject)+24)
	if err != nil {
		return 0, err
	}
	at, err := memory.I64(d.r, def+16)
	if err != nil {
		return 0, err
	}
	if at < int64(d.l.SizeofPyObject) || at > maxSlotOffset || at%8 != 0 {
		return 0, fmt.Errorf("slot %s.%s at offset %d: %w", t.name, name, at, ErrWrongType)
	}
	return uint64(at), nil
}
