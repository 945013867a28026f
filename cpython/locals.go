package cpython

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// MaxReprLen bounds the text Repr returns (in characters, before the
// "..." that marks a truncated repr).
const MaxReprLen = 200

// Kinds of co_localspluskinds (Include/internal/pycore_code.h), 3.11+.
const (
	coFastHidden = 0x10 // 3.12+: hidden locals of inlined comprehensions
	coFastLocal  = 0x20
	coFastCell   = 0x40
	coFastFree   = 0x80
)

// Repr returns a short, bounded description of the object at obj:
//
//   - None, bool, int, float, str and bytes: exactly what Python's repr()
//     prints (2.7: longs end in "L", unicode has the u prefix), cut to
//     MaxReprLen characters followed by "..." when longer;
//   - tuple, list, dict, set, frozenset (and their subclasses): the type
//     __name__ and the length, e.g. "list(len=3)", "OrderedDict(len=2)";
//     empty builtin ones as Python prints them: "[]", "()", "{}", "set()",
//     "frozenset()" ("set([])" on 2.7);
//   - a class: "<class 'MODULE.NAME'>" as Python prints it (see classRepr);
//   - anything else: "<NAME object at 0xADDR>", NAME being the type's
//     __name__ (tp_name without a module prefix), like the default repr.
//
// Repr never runs code in the target, so it cannot show what a class's
// __repr__ would print.
func Repr(r memory.Reader, l *layout.Layout, obj uint64) (string, error) {
	return newDecoder(r, l).repr(obj)
}

func (d *decoder) repr(obj uint64) (string, error) {
	t, err := d.typeOf(obj)
	if err != nil {
		return "", err
	}
	l := d.l
	switch t.name {
	case "NoneType":
		return "None", nil
	case "bool":
		v, err := d.intValue(obj, t)
		if err != nil {
			return "", err
		}
		if v.Sign() != 0 {
			return "True", nil
		}
		return "False", nil
	case "int", "long":
		v, err := d.intValue(obj, t)
		if err != nil {
			return "", err
		}
		s := v.String()
		if l.Major < 3 && t.name == "long" {
			s += "L"
		}
		if len(s) > MaxReprLen {
			s = s[:MaxReprLen] + "..."
		}
		return s, nil
	case "float":
		v, err := d.floatValue(obj)
		if err != nil {
			return "", err
		}
		return FloatRepr(v), nil
	case "str", "bytes", "unicode":
		var s string
		var trunc bool
		if t.name == "bytes" && l.Major >= 3 {
			s, trunc, err = d.bytesData(obj, MaxReprLen)
		} else {
			s, trunc, err = d.strTrunc(obj, MaxReprLen)
		}
		if err != nil {
			return "", err
		}
		var q string
		switch {
		case l.Major >= 3 && t.name == "str":
			q = quoteStr(s, false)
		case t.name == "unicode":
			q = "u" + quoteStr(s, true)
		case l.Major >= 3:
			q = "b" + quoteBytes(s)
		default:
			q = quoteBytes(s)
		}
		if trunc {
			q += "..."
		}
		return q, nil
	}
	if t.flags&tpflagsTypeSubclass != 0 {
		return d.classRepr(obj)
	}
	if n, ok, err := d.length(obj, t); ok && t.flags&(tpflagsBytesSubclass|tpflagsUnicodeSubclass) == 0 {
		if err != nil {
			return "", err
		}
		if e, ok := emptyRepr[t.name]; ok && n == 0 {
			if d.l.Major < 3 && strings.HasSuffix(e, "set()") {
				e = strings.TrimSuffix(e, ")") + "[])" // 2.7: set([])
			}
			return e, nil
		}
		return fmt.Sprintf("%s(len=%d)", shortTypeName(t.name), n), nil
	}
	return fmt.Sprintf("<%s object at %#x>", shortTypeName(t.name), obj), nil
}

// Type flags Repr needs (Include/object.h, the same from 2.7 to 3.14).
const (
	tpflagsHeapType     = 1 << 9
	tpflagsTypeSubclass = 1 << 31
)

// emptyRepr is Python's repr of the empty builtin containers.
var emptyRepr = map[string]string{"list": "[]", "tuple": "()", "dict": "{}", "set": "set()", "frozenset": "frozenset()"}

// classRepr describes the class cls as type.__repr__ does: "<class
// 'MODULE.NAME'>" ("<type 'NAME'>" for 2.7's builtin types), MODULE left
// out for builtins. The name is tp_name: a class defined inside another
// class or a function is shown by its own name, not its __qualname__.
func (d *decoder) classRepr(cls uint64) (string, error) {
	ct, err := d.typeAt(cls)
	if err != nil {
		return "", err
	}
	kind := "class"
	if d.l.Major < 3 && ct.flags&tpflagsHeapType == 0 {
		kind = "type"
	}
	name := ct.name
	if ct.flags&tpflagsHeapType != 0 {
		if mod, ok := d.classModule(cls); ok && mod != "builtins" && mod != "__builtin__" {
			name = mod + "." + name
		}
	}
	return fmt.Sprintf("<%s '%s'>", kind, name), nil
}

// classModule reads __module__ from the dict of the heap type cls.
// tp_dict is three pointers before tp_dictoffset in PyTypeObject (2.7 to
// 3.14: tp_dict, tp_descr_get, tp_descr_set, tp_dictoffset).
func (d *decoder) classModule(cls uint64) (string, bool) {
	off := d.l.TypeTpDictoffset - 24
	if off <= 0 {
		return "", false
	}
	dict, err := memory.NonNullPtr(d.r, cls+uint64(off))
	if err != nil {
		return "", false
	}
	mod, err := DictGet(d.r, d.l, dict, "__module__")
	if err != nil {
		return "", false
	}
	s, err := String(d.r, d.l, mod, MaxNameLen)
	return s, err == nil
}

func shortTypeName(n string) string {
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		return n[i+1:]
	}
	return n
}

// FloatRepr formats v as Python's repr(float) does (shortest digits that
// round-trip; exponent form below 1e-4 and from 1e16 on).
func FloatRepr(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	case math.IsNaN(v):
		return "nan"
	}
	e := strconv.FormatFloat(v, 'e', -1, 64) // -d.ddde±XX
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1 // value = 0.DIGITS × 10^decpt
	if decpt <= -4 || decpt > 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	default:
		return sign + digits[:decpt] + "." + digits[decpt:]
	}
}

// pickQuote returns the quote Python's repr uses for s.
func pickQuote(s string) byte {
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		return '"'
	}
	return '\''
}

// quoteStr quotes text as Python 3's str repr (asciiOnly: as 2.7's
// unicode repr, escaping every non-ASCII character).
func quoteStr(s string, asciiOnly bool) string {
	q := pickQuote(s)
	var b strings.Builder
	b.WriteByte(q)
	for _, c := range s {
		switch {
		case c == rune(q) || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < ' ' || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		case c < 0x7f:
			b.WriteRune(c)
		case !asciiOnly && unicode.IsPrint(c):
			b.WriteRune(c)
		case c <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, c)
		case c <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			fmt.Fprintf(&b, `\U%08x`, c)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// quoteBytes quotes raw bytes as Python's bytes repr (without the b).
func quoteBytes(s string) string {
	q := pickQuote(s)
	var b strings.Builder
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < ' ' || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// localNames reads (once) the names and kinds of a code object's fast
// locals: co_varnames + co_cellvars + co_freevars (≤3.10), or
// co_localsplusnames and co_localspluskinds (3.11+).
func (d *decoder) localNames(c *codeInfo) error {
	if c.localNames != nil {
		return nil
	}
	l := d.l
	f := &fields{b: c.hdr, what: "PyCodeObject"}
	var tuples []uint64
	if l.CodeCoLocalsplusnames >= 0 {
		tuples = []uint64{f.u64(l.CodeCoLocalsplusnames)}
		kindsPtr := f.u64(l.CodeCoLocalspluskinds)
		if f.err != nil {
			return f.err
		}
		kinds, trunc, err := d.bytesData(kindsPtr, maxLocals)
		if err == nil && trunc {
			err = memory.ErrTooLarge
		}
		if err != nil {
			return fmt.Errorf("reading co_localspluskinds: %w", err)
		}
		c.localKinds = []byte(kinds)
	} else {
		tuples = []uint64{f.u64(l.CodeCoVarnames), f.u64(l.CodeCoCellvars), f.u64(l.CodeCoFreevars)}
		c.nlocals = int(f.i32(l.CodeCoNlocals))
		if f.err != nil {
			return f.err
		}
	}
	names := []string{}
	ncells := 0
	for i, tp := range tuples {
		items, err := d.tupleItems(tp, maxLocals)
		if err != nil {
			return fmt.Errorf("reading local names: %w", err)
		}
		if i == 0 && c.localKinds == nil && len(items) != c.nlocals {
			return fmt.Errorf("co_varnames has %d names for %d locals", len(items), c.nlocals)
		}
		if i > 0 {
			ncells += len(items)
		}
		for _, it := range items {
			s, err := d.str(it, MaxNameLen)
			if err != nil {
				return fmt.Errorf("reading local name: %w", err)
			}
			names = append(names, s)
		}
	}
	if c.localKinds != nil && len(c.localKinds) != len(names) {
		return fmt.Errorf("%d local kinds for %d names", len(c.localKinds), len(names))
	}
	if c.localKinds == nil {
		c.localKinds = make([]byte, len(names))
		for i := range c.localKinds {
			c.localKinds[i] = coFastLocal
			if i >= c.nlocals {
				c.localKinds[i] = coFastCell
			}
		}
	}
	c.localNames = names
	return nil
}

// frameLocals fills f.Locals from the fast-locals array at slots.
func (d *decoder) frameLocals(f *Frame, c *codeInfo, slots uint64) error {
	if err := d.localNames(c); err != nil {
		return err
	}
	vals, err := d.ptrArray(slots, len(c.localNames))
	if err != nil {
		return fmt.Errorf("reading locals: %w", err)
	}
	f.Locals = map[string]string{}
	for i, name := range c.localNames {
		v := vals[i]
		kind := c.localKinds[i]
		if kind&coFastHidden != 0 {
			continue
		}
		if d.l.Major == 3 && d.l.Minor >= 14 {
			if v&3 == 3 { // a tagged int, not an object
				continue
			}
			v &^= 7
		}
		if v == 0 {
			continue
		}
		if kind&(coFastCell|coFastFree) != 0 {
			t, err := d.typeOf(v)
			if err == nil && t.name == "cell" {
				if v, err = memory.Ptr(d.r, v+uint64(d.l.SizeofPyObject)); err != nil {
					return fmt.Errorf("reading cell of %s: %w", name, err)
				}
				if v == 0 {
					continue
				}
			}
		}
		s, err := d.repr(v)
		if err != nil {
			s = fmt.Sprintf("<unreadable: %v>", err)
		}
		if _, dup := f.Locals[name]; !dup {
			f.LocalNames = append(f.LocalNames, name)
		}
		f.Locals[name] = s
	}
	return nil
}
