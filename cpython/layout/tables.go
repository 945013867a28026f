package layout

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
)

// Supported CPython versions, checked in one place: 2.7 and 3.6 through
// 3.15.
const (
	MinMinor3 = 6  // oldest supported 3.x minor
	MaxMinor3 = 15 // newest supported 3.x minor
)

// Supported reports whether pyglass knows CPython major.minor.
func Supported(major, minor int) bool {
	return (major == 2 && minor == 7) || (major == 3 && minor >= MinMinor3 && minor <= MaxMinor3)
}

var (
	// ErrUnsupported is returned for a version outside the supported range.
	ErrUnsupported = errors.New("unsupported CPython version")
	// ErrNoTable is returned when a supported version has no generated
	// table (3.14 without its headers): its layout must come from the
	// target's _Py_DebugOffsets (FromDebugOffsets).
	ErrNoTable = errors.New("no generated layout table for this version")
)

// The tables are compiled in (tables_gen.go, written by ./gen from
// tables.json): static data, nothing decoded at run time. Decoding the
// embedded JSON was 0.6 ms of every command's start.

// Keys returns the keys of the generated tables ("2.7", "3.11",
// "3.11-debian" when a build differs from the first one seen), sorted.
func Keys() []string {
	keys := make([]string, 0, len(generated))
	for _, g := range generated {
		keys = append(keys, g.key)
	}
	sort.Strings(keys)
	return keys
}

// For returns the generated layout of CPython major.minor. It returns
// ErrUnsupported outside the supported range and ErrNoTable when the
// version has no generated table (see FromDebugOffsets). The result is a
// fresh copy the caller may modify.
func For(major, minor int) (*Layout, error) {
	if !Supported(major, minor) {
		return nil, fmt.Errorf("%d.%d: %w", major, minor, ErrUnsupported)
	}
	return ForKey(strconv.Itoa(major) + "." + strconv.Itoa(minor))
}

// ForKey returns the generated table stored under key (see Keys), a
// fresh copy.
func ForKey(key string) (*Layout, error) {
	for i := range generated {
		if generated[i].key == key {
			l := generated[i].layout
			return &l, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", key, ErrNoTable)
}

// New returns a Layout with every offset set to -1 (unknown).
func New() *Layout {
	l := &Layout{}
	v := reflect.ValueOf(l).Elem()
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("json") == "-" {
			continue
		}
		v.Field(i).SetInt(-1)
	}
	return l
}

// Set assigns fields by name (the names of Fields), for tests and tools
// that build a layout by hand; it fails on an unknown name.
func (l *Layout) Set(m map[string]int) error { return l.set(m) }

// set assigns fields by name.
func (l *Layout) set(m map[string]int) error {
	v := reflect.ValueOf(l).Elem()
	for name, val := range m {
		f := v.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Int {
			return fmt.Errorf("unknown field %s", name)
		}
		f.SetInt(int64(val))
	}
	return nil
}

// Fields returns the offsets by field name (for tests and diagnostics).
func (l *Layout) Fields() map[string]int {
	names := fieldNames()
	m := make(map[string]int, len(names))
	v := reflect.ValueOf(l).Elem()
	for k, i := range indexes {
		m[names[k]] = int(v.Field(i).Int())
	}
	return m
}

// AtLeast reports whether the layout's version is major.minor or newer.
func (l *Layout) AtLeast(major, minor int) bool {
	return l.Major > major || (l.Major == major && l.Minor >= minor)
}
