package layout

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// ErrBadLayout is returned by Validate for a layout whose offsets or
// sizes cannot describe a real CPython structure.
var ErrBadLayout = errors.New("invalid structure layout")

// fieldWidth is how many bytes the decoders read at an offset field
// (8 unless listed: C ints, chars and uint8 fields).
var fieldWidth = map[string]int{
	"RuntimeCevalGilLocked": 4, "GilLocked": 4,
	"FrameFLasti": 4, "FrameFLineno": 4, "InterpFrameOwner": 1, "InterpFrameStacktop": 4,
	"CodeCoArgcount": 4, "CodeCoPosonlyargcount": 4, "CodeCoKwonlyargcount": 4, "CodeCoNlocals": 4,
	"CodeCoNlocalsplus": 4, "CodeCoNcellvars": 4, "CodeCoNfreevars": 4, "CodeCoStacksize": 4,
	"CodeCoFlags": 4, "CodeCoFirstlineno": 4, "CodeCoCodeAdaptive": 0, // inline bytecode: starts there
	"ASCIIObjectState":   4,
	"DictKeysDkLog2Size": 1, "DictKeysDkLog2IndexBytes": 1, "DictKeysDkKind": 1,
	"DictKeysDkIndices": 0, "TupleObItem": 0, "LongObDigit": 0, "BytesObSval": 0, "StringObSval": 0,
	"FrameFLocalsplus": 0, "InterpFrameLocalsplus": 0, "DictValuesValues": 0,
}

// sizeRange bounds each size field when it is known.
var sizeRange = map[string][2]int{
	"SizeofPyObject":               {16, 32},
	"SizeofPyCodeObject":           {64, 4096},
	"SizeofPyASCIIObject":          {24, 256},
	"SizeofPyCompactUnicodeObject": {24, 256},
	"SizeofPyUNICODE":              {2, 4},
	"SizeofDigit":                  {2, 4},
	"SizeofPyDictEntry":            {24, 64},
	"SizeofPyDictKeyEntry":         {24, 64},
	"SizeofPyDictUnicodeEntry":     {16, 64},
}

// container returns the size field of the structure a field belongs to,
// when the layout carries that size.
func container(field string) string {
	switch {
	case strings.HasPrefix(field, "CodeCo"):
		return "SizeofPyCodeObject"
	case strings.HasPrefix(field, "ObjectOb"):
		return "SizeofPyObject"
	case strings.HasPrefix(field, "ASCIIObject"):
		return "SizeofPyASCIIObject"
	}
	return ""
}

// Validate checks that every offset of l, with the width the decoders
// read there, lies inside its structure (within the structure's size
// when the layout has it, else within maxStructSize), that every size is
// plausible, and that no field is below -1. A layout that passes cannot
// make a decoder read outside what it sized for a structure. The error
// names the first bad field and matches ErrBadLayout.
func (l *Layout) Validate() error {
	f := l.Fields()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%d.%d: %s: %w", l.Major, l.Minor, fmt.Sprintf(format, a...), ErrBadLayout)
	}
	for _, name := range fieldNames() {
		v := f[name]
		switch {
		case v == -1:
			continue
		case v < 0 || v > maxStructSize:
			return bad("%s = %d", name, v)
		}
		if r, ok := sizeRange[name]; ok {
			if v < r[0] || v > r[1] {
				return bad("%s = %d, not in [%d, %d]", name, v, r[0], r[1])
			}
			continue
		}
		if strings.HasPrefix(name, "Sizeof") {
			continue
		}
		w, ok := fieldWidth[name]
		if !ok {
			w = 8
		}
		limit := maxStructSize
		if c := container(name); c != "" && f[c] > 0 {
			limit = f[c]
		}
		if v+w > limit || (w == 0 && v >= limit && limit != maxStructSize) {
			return bad("%s = %d (%d bytes) outside a structure of %d bytes", name, v, w, limit)
		}
	}
	if f["VarObjectObSize"] >= 0 && f["SizeofPyObject"] > 0 && f["VarObjectObSize"] < f["ObjectObType"] {
		return bad("ob_size %d before ob_type %d", f["VarObjectObSize"], f["ObjectObType"])
	}
	if a, c := f["SizeofPyASCIIObject"], f["SizeofPyCompactUnicodeObject"]; a > 0 && c > 0 && c < a {
		return bad("sizeof(PyCompactUnicodeObject) %d below sizeof(PyASCIIObject) %d", c, a)
	}
	if n, s := f["ASCIIObjectLength"], f["ASCIIObjectState"]; n >= 0 && s >= 0 && s < n+8 {
		return bad("PyASCIIObject.state %d not after length %d", s, n)
	}
	return nil
}

var (
	namesOnce sync.Once
	names     []string
	indexes   []int // names' indexes in Layout
)

// fieldNames returns the offset and size fields of Layout in declaration
// order.
func fieldNames() []string {
	namesOnce.Do(func() {
		t := reflect.TypeOf(Layout{})
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).Tag.Get("json") != "-" {
				names = append(names, t.Field(i).Name)
				indexes = append(indexes, i)
			}
		}
	})
	return names
}
