package cpython

// Line tables map a bytecode offset to a source line. CPython has used
// three encodings; each decoder here mirrors the interpreter's own
// PyCode_Addr2Line for that encoding, so the line pyglass prints is the
// line a traceback in the target would print. Every decoder works on a
// byte slice already copied out of the target, never reads past it and
// runs in time linear in its length.

// LineFormat identifies a line-table encoding.
type LineFormat int

const (
	// LnotabUnsigned is co_lnotab of Python 2.7: pairs of unsigned
	// (bytecode delta, line delta) bytes.
	LnotabUnsigned LineFormat = iota + 1
	// LnotabSigned is co_lnotab of Python 3.6–3.9: as LnotabUnsigned but
	// the line delta is a signed byte.
	LnotabSigned
	// Linetable310 is co_linetable of Python 3.10: pairs of (unsigned
	// bytecode delta, signed line delta) where a line delta of -128 means
	// "no line".
	Linetable310
	// Locations is the PEP 657 location table of Python 3.11 and later
	// (co_linetable): variable-length entries, each covering 1–8 code
	// units of 2 bytes.
	Locations
)

// String returns the CPython name of the format.
func (f LineFormat) String() string {
	switch f {
	case LnotabUnsigned:
		return "lnotab(2.7)"
	case LnotabSigned:
		return "lnotab"
	case Linetable310:
		return "linetable(3.10)"
	case Locations:
		return "locations"
	}
	return "unknown"
}

// LineFormatFor returns the line-table encoding of a CPython version.
func LineFormatFor(major, minor int) LineFormat {
	switch {
	case major < 3:
		return LnotabUnsigned
	case minor <= 9:
		return LnotabSigned
	case minor == 10:
		return Linetable310
	default:
		return Locations
	}
}

// AddrToLine returns the source line of the instruction at byte offset
// addr of a code object whose first line is firstLine and whose line
// table (in format f) is table. It returns -1 when the table says the
// instruction has no line, as CPython does, and firstLine for a negative
// addr (a frame that has not started yet). Corrupted tables give a
// wrong line, never a panic.
func AddrToLine(f LineFormat, table []byte, firstLine, addr int) int {
	if addr < 0 {
		return firstLine
	}
	switch f {
	case LnotabUnsigned, LnotabSigned:
		return lnotabLine(table, f == LnotabSigned, firstLine, addr)
	case Linetable310:
		return linetable310Line(table, firstLine, addr)
	case Locations:
		return locationsLine(table, firstLine, addr)
	}
	return -1
}

// LineRange is one run of bytecode [Start, End) (byte offsets) that
// belongs to source line Line (-1: none).
type LineRange struct {
	Start, End int
	Line       int
}

// LineRanges decodes a whole line table into ranges, in bytecode order,
// as code.co_lines() reports them on 3.10+. For the lnotab formats the
// last range ends at codeLen. Used by tests and by tools that print a
// whole code object; at most len(table) ranges are returned.
func LineRanges(f LineFormat, table []byte, firstLine, codeLen int) []LineRange {
	var out []LineRange
	switch f {
	case LnotabUnsigned, LnotabSigned:
		line, addr := firstLine, 0
		for i := 0; i+1 < len(table); i += 2 {
			next := addr + int(table[i])
			if next != addr {
				out = append(out, LineRange{addr, next, line})
			}
			addr = next
			if f == LnotabSigned {
				line += int(int8(table[i+1]))
			} else {
				line += int(table[i+1])
			}
		}
		if addr < codeLen {
			out = append(out, LineRange{addr, codeLen, line})
		}
	case Linetable310:
		var it lt310
		it.init(table, firstLine)
		for it.next() {
			out = append(out, LineRange{it.start, it.end, it.line})
		}
	case Locations:
		var it locIter
		it.init(table, firstLine)
		for it.next() {
			out = append(out, LineRange{it.start, it.end, it.line})
		}
	}
	return out
}

// lnotabLine mirrors PyCode_Addr2Line of 2.7–3.9.
func lnotabLine(table []byte, signed bool, line, addr int) int {
	a := 0
	for i := 0; i+1 < len(table); i += 2 {
		a += int(table[i])
		if a > addr {
			break
		}
		if signed {
			line += int(int8(table[i+1]))
		} else {
			line += int(table[i+1])
		}
	}
	return line
}

// lt310 walks a 3.10 co_linetable the way PyLineTable_NextAddressRange
// does: zero-length entries only carry line deltas.
type lt310 struct {
	table      []byte
	pos        int
	computed   int
	start, end int
	line       int
}

func (it *lt310) init(table []byte, firstLine int) {
	*it = lt310{table: table, computed: firstLine, start: -1, end: 0, line: -1}
}

func (it *lt310) advance() {
	it.start = it.end
	it.end += int(it.table[it.pos])
	d := int8(it.table[it.pos+1])
	it.pos += 2
	if d == -128 {
		it.line = -1
	} else {
		it.computed += int(d)
		it.line = it.computed
	}
}

func (it *lt310) atEnd() bool { return it.pos+1 >= len(it.table) }

// next moves to the next non-empty range; false at the end.
func (it *lt310) next() bool {
	if it.atEnd() {
		return false
	}
	it.advance()
	for it.start == it.end {
		if it.atEnd() {
			return false
		}
		it.advance()
	}
	return true
}

func linetable310Line(table []byte, firstLine, addr int) int {
	var it lt310
	it.init(table, firstLine)
	for it.end <= addr {
		if !it.next() {
			return -1
		}
	}
	if it.start > addr {
		// Only possible before the first entry, which starts at 0.
		return -1
	}
	return it.line
}

// Location-table entry codes (Include/internal/pycore_code.h,
// InternalDocs/locations.md).
const (
	locShort0    = 0 // 0–9: short form, same line
	locOneLine0  = 10
	locOneLine1  = 11
	locOneLine2  = 12
	locNoColumns = 13
	locLong      = 14
	locNone      = 15
)

// locIter walks a PEP 657 location table.
type locIter struct {
	table      []byte
	pos        int
	computed   int
	start, end int // byte offsets
	line       int
}

func (it *locIter) init(table []byte, firstLine int) {
	*it = locIter{table: table, computed: firstLine, start: -1, end: 0, line: -1}
}

// varint reads an unsigned 6-bit-chunk varint at p, bounded by the
// table and by 32 bits of value.
func (it *locIter) varint(p int) int {
	var val uint32
	shift := uint(0)
	for p < len(it.table) && shift < 32 {
		b := it.table[p]
		p++
		val |= uint32(b&63) << shift
		shift += 6
		if b&64 == 0 {
			break
		}
	}
	return int(int32(val))
}

func (it *locIter) svarint(p int) int {
	u := uint32(it.varint(p))
	if u&1 != 0 {
		return -int(u >> 1)
	}
	return int(u >> 1)
}

func (it *locIter) lineDelta(p int) int {
	switch code := (it.table[p] >> 3) & 15; code {
	case locNoColumns, locLong:
		return it.svarint(p + 1)
	case locOneLine1:
		return 1
	case locOneLine2:
		return 2
	}
	return 0
}

// next decodes one entry; false at the end of the table. Unlike the
// 3.10 format every entry covers at least one code unit.
func (it *locIter) next() bool {
	if it.pos >= len(it.table) {
		return false
	}
	b := it.table[it.pos]
	it.computed += it.lineDelta(it.pos)
	if b>>3 == 0x1f {
		it.line = -1
	} else {
		it.line = it.computed
	}
	it.start = it.end
	it.end += (int(b&7) + 1) * 2
	it.pos++
	for it.pos < len(it.table) && it.table[it.pos]&128 == 0 {
		it.pos++
	}
	return true
}

func locationsLine(table []byte, firstLine, addr int) int {
	var it locIter
	it.init(table, firstLine)
	for it.end <= addr {
		if !it.next() {
			return -1
		}
	}
	return it.line
}
