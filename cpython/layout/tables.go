package layout

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
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

//go:embed tables.json
var tablesJSON []byte

type table struct {
	Sources []string       `json:"sources"`
	Offsets map[string]int `json:"offsets"`
}

var (
	loadOnce sync.Once
	loaded   map[string]json.RawMessage // each version's table, still encoded
	loadErr  error
	parsedMu sync.Mutex
	parsed   = map[string]*table{}
)

// tables returns the encoded table of every key. A command needs one or
// two of the 15 tables: decoding them all (a map of 100 offsets each)
// was 2 ms of every run's CPU.
func tables() (map[string]json.RawMessage, error) {
	loadOnce.Do(func() {
		loadErr = json.Unmarshal(tablesJSON, &loaded)
		if loadErr != nil {
			loadErr = fmt.Errorf("decoding tables.json: %w", loadErr)
		}
	})
	return loaded, loadErr
}

// tableFor returns the decoded table of key, nil when there is none.
func tableFor(key string) (*table, error) {
	t, err := tables()
	if err != nil {
		return nil, err
	}
	raw, ok := t[key]
	if !ok {
		return nil, nil
	}
	parsedMu.Lock()
	defer parsedMu.Unlock()
	if tab, ok := parsed[key]; ok {
		return tab, nil
	}
	tab := &table{}
	if err := json.Unmarshal(raw, tab); err != nil {
		return nil, fmt.Errorf("decoding tables.json, %s: %w", key, err)
	}
	parsed[key] = tab
	return tab, nil
}

// Keys returns the keys of the generated tables ("2.7", "3.11",
// "3.11-debian" when a build differs from the first one seen), sorted.
func Keys() []string {
	t, err := tables()
	if err != nil {
		return nil
	}
	var keys []string
	for k := range t {
		keys = append(keys, k)
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
	return ForKey(fmt.Sprintf("%d.%d", major, minor))
}

// ForKey returns the generated table stored under key (see Keys).
func ForKey(key string) (*Layout, error) {
	tab, err := tableFor(key)
	if err != nil {
		return nil, err
	}
	if tab == nil {
		return nil, fmt.Errorf("%s: %w", key, ErrNoTable)
	}
	l := New()
	if _, err := fmt.Sscanf(key, "%d.%d", &l.Major, &l.Minor); err != nil {
		return nil, fmt.Errorf("parsing table key %q: %w", key, err)
	}
	if err := l.set(tab.Offsets); err != nil {
		return nil, fmt.Errorf("table %s: %w", key, err)
	}
	return l, nil
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
	m := map[string]int{}
	v := reflect.ValueOf(l).Elem()
	for i := 0; i < v.NumField(); i++ {
		sf := v.Type().Field(i)
		if sf.Tag.Get("json") == "-" {
			continue
		}
		m[sf.Name] = int(v.Field(i).Int())
	}
	return m
}

// AtLeast reports whether the layout's version is major.minor or newer.
func (l *Layout) AtLeast(major, minor int) bool {
	return l.Major > major || (l.Major == major && l.Minor >= minor)
}
