package cpython

import (
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// DictGet returns the value stored under the string key in the dict at
// dict (the address of a dict object, or of a dict subclass instance).
// It works for every layout: 2.7 (ma_table), 3.6–3.10 (split or combined
// keys with dk_indices), 3.11+ (dk_log2_size, general or unicode keys,
// split values). Keys that are str (2.7: str or unicode) with the same
// text match; other keys are ignored. The lookup scans the entries, so it
// needs no hash of the key (the target's hash seed is unknown); it is
// bounded to 2^20 entries.
//
// It fails with ErrKeyNotFound when no entry matches, ErrWrongType when
// dict is not a dict, and a memory error when the dict cannot be read.
func DictGet(r memory.Reader, l *layout.Layout, dict uint64, key string) (uint64, error) {
	return newDecoder(r, l).dictGet(dict, key)
}

// DictItem is one key/value pair of a dict, as object addresses.
type DictItem struct {
	Key, Value uint64
}

// DictItems returns the live entries of a dict, in insertion order on
// 3.6+ (slot order on 2.7), at most max of them; more entries fail with
// memory.ErrTooLarge.
func DictItems(r memory.Reader, l *layout.Layout, dict uint64, max int) ([]DictItem, error) {
	d := newDecoder(r, l)
	t, err := d.typeOf(dict)
	if err != nil {
		return nil, err
	}
	if t.flags&tpflagsDictSubclass == 0 {
		return nil, fmt.Errorf("object at %#x has type %q, not dict: %w", dict, t.name, ErrWrongType)
	}
	return d.dictItems(dict, max)
}

func (d *decoder) dictGet(dict uint64, key string) (uint64, error) {
	t, err := d.typeOf(dict)
	if err != nil {
		return 0, err
	}
	if t.flags&tpflagsDictSubclass == 0 {
		return 0, fmt.Errorf("object at %#x has type %q, not dict: %w", dict, t.name, ErrWrongType)
	}
	items, err := d.dictItems(dict, maxDictEntries)
	if err != nil {
		return 0, err
	}
	return d.findKey(items, key)
}

// DictGetInt returns the value stored under the int key in the dict at
// dict (threading._active maps thread idents to Thread objects). Keys
// that are not ints are ignored. Errors are those of DictGet.
func DictGetInt(r memory.Reader, l *layout.Layout, dict uint64, key int64) (uint64, error) {
	d := newDecoder(r, l)
	t, err := d.typeOf(dict)
	if err != nil {
		return 0, err
	}
	if t.flags&tpflagsDictSubclass == 0 {
		return 0, fmt.Errorf("object at %#x has type %q, not dict: %w", dict, t.name, ErrWrongType)
	}
	items, err := d.dictItems(dict, maxDictEntries)
	if err != nil {
		return 0, err
	}
	d.prefetchKeys(items, 32) // the header and a small int's digits
	for _, it := range items {
		kt, err := d.typeOf(it.Key)
		if err != nil {
			continue
		}
		v, err := d.intValue(it.Key, kt)
		if err == nil && v.IsInt64() && v.Int64() == key {
			return it.Value, nil
		}
	}
	return 0, fmt.Errorf("looking up %d: %w", key, ErrKeyNotFound)
}

// prefetchKeys hints the reader that the first n bytes of every key of
// items are about to be read (memory.Prefetch): a dict's keys are objects
// of their own, on as many pages.
func (d *decoder) prefetchKeys(items []DictItem, n int) {
	if len(items) < 8 {
		return
	}
	addrs := make([]uint64, len(items))
	for i, it := range items {
		addrs[i] = it.Key
	}
	memory.Prefetch(d.r, addrs, n)
}

// findKey returns the value of the first item whose key is the string key.
func (d *decoder) findKey(items []DictItem, key string) (uint64, error) {
	// The header, the length and a short name's characters.
	d.prefetchKeys(items, 64)
	for _, it := range items {
		if d.keyEquals(it.Key, key) {
			return it.Value, nil
		}
	}
	return 0, fmt.Errorf("looking up %q: %w", key, ErrKeyNotFound)
}

// keyEquals reports whether the object at k is a string equal to key.
// Unreadable keys and keys of other types are not equal.
func (d *decoder) keyEquals(k uint64, key string) bool {
	if d.l.Major >= 3 && d.l.ASCIIObjectLength >= 0 && isASCII(key) {
		// A 3.x str's length is in characters: a string equal to an
		// ASCII key has as many as the key has bytes. One word read
		// rules out most keys (sys.modules has hundreds) without
		// decoding them.
		if n, err := memory.I64(d.r, k+uint64(d.l.ASCIIObjectLength)); err == nil && n != int64(len(key)) {
			return false
		}
	}
	s, trunc, err := d.strTrunc(k, len(key)+1)
	return err == nil && !trunc && s == key
}

// dictItems returns the items of a dict, whatever the version.
func (d *decoder) dictItems(dict uint64, max int) ([]DictItem, error) {
	if d.l.Major < 3 {
		return d.dictItems27(dict, max)
	}
	keys, err := memory.NonNullPtr(d.r, dict+uint64(d.l.DictMaKeys))
	if err != nil {
		return nil, fmt.Errorf("reading ma_keys: %w", err)
	}
	values, err := memory.Ptr(d.r, dict+uint64(d.l.DictMaValues))
	if err != nil {
		return nil, fmt.Errorf("reading ma_values: %w", err)
	}
	if values != 0 {
		if d.l.Minor >= 11 {
			values += uint64(d.l.DictValuesValues)
		}
	}
	return d.keysItems(keys, values, max)
}

// dictItems27 scans a 2.7 ma_table.
func (d *decoder) dictItems27(dict uint64, max int) ([]DictItem, error) {
	l := d.l
	mask, err := memory.I64(d.r, dict+uint64(l.DictMaMask))
	if err != nil {
		return nil, fmt.Errorf("reading ma_mask: %w", err)
	}
	if mask < 0 || mask >= maxDictEntries {
		return nil, fmt.Errorf("dict mask %d at %#x: %w", mask, dict, memory.ErrTooLarge)
	}
	table, err := memory.NonNullPtr(d.r, dict+uint64(l.DictMaTable))
	if err != nil {
		return nil, fmt.Errorf("reading ma_table: %w", err)
	}
	es := l.SizeofPyDictEntry
	if es < 24 || es > 64 {
		return nil, fmt.Errorf("dict layout: sizeof(PyDictEntry) = %d: %w", es, layout.ErrBadLayout)
	}
	b, err := d.readBytes(table, int(mask+1)*es)
	if err != nil {
		return nil, fmt.Errorf("reading dict table: %w", err)
	}
	var out []DictItem
	for i := 0; i+es <= len(b); i += es {
		k := memory.Order.Uint64(b[i+8:])
		v := memory.Order.Uint64(b[i+16:])
		if k == 0 || v == 0 { // empty or dummy (deleted) slot
			continue
		}
		if len(out) >= max {
			return nil, fmt.Errorf("dict at %#x has more than %d items: %w", dict, max, memory.ErrTooLarge)
		}
		out = append(out, DictItem{k, v})
	}
	return out, nil
}

// keysItems reads the entries of a 3.x PyDictKeysObject; values, when not
// zero, is the array of values of a split table.
func (d *decoder) keysItems(keys, values uint64, max int) ([]DictItem, error) {
	l := d.l
	var indexBytes int64
	entrySize := l.SizeofPyDictKeyEntry
	keyOff, valOff := 8, 16 // {me_hash, me_key, me_value}
	if l.DictKeysDkLog2Size >= 0 {
		// 3.11+.
		log2, err := memory.U8(d.r, keys+uint64(l.DictKeysDkLog2Size))
		if err != nil {
			return nil, fmt.Errorf("reading dk_log2_size: %w", err)
		}
		lib, err := memory.U8(d.r, keys+uint64(l.DictKeysDkLog2IndexBytes))
		if err != nil {
			return nil, fmt.Errorf("reading dk_log2_index_bytes: %w", err)
		}
		kind, err := memory.U8(d.r, keys+uint64(l.DictKeysDkKind))
		if err != nil {
			return nil, fmt.Errorf("reading dk_kind: %w", err)
		}
		if log2 > 40 || lib > 45 {
			return nil, fmt.Errorf("dict keys at %#x with log2 size %d: %w", keys, log2, memory.ErrTooLarge)
		}
		indexBytes = 1 << lib
		if kind != 0 { // DICT_KEYS_UNICODE or DICT_KEYS_SPLIT: {me_key, me_value}
			entrySize, keyOff, valOff = l.SizeofPyDictUnicodeEntry, 0, 8
		}
	} else {
		size, err := memory.I64(d.r, keys+uint64(l.DictKeysDkSize))
		if err != nil {
			return nil, fmt.Errorf("reading dk_size: %w", err)
		}
		if size <= 0 || size > 1<<40 {
			return nil, fmt.Errorf("dict keys at %#x with size %d: %w", keys, size, memory.ErrTooLarge)
		}
		w := int64(8)
		switch {
		case size <= 0xff:
			w = 1
		case size <= 0xffff:
			w = 2
		case size <= 0xffffffff:
			w = 4
		}
		indexBytes = size * w
	}
	if entrySize < valOff+8 || entrySize > 64 {
		return nil, fmt.Errorf("dict layout: entries of %d bytes: %w", entrySize, layout.ErrBadLayout)
	}
	n, err := memory.I64(d.r, keys+uint64(l.DictKeysDkNentries))
	if err != nil {
		return nil, fmt.Errorf("reading dk_nentries: %w", err)
	}
	if n < 0 || n > maxDictEntries || indexBytes > maxDictEntries*8 {
		return nil, fmt.Errorf("dict keys at %#x with %d entries: %w", keys, n, memory.ErrTooLarge)
	}
	entries := keys + uint64(l.DictKeysDkIndices) + uint64(indexBytes)
	b, err := d.readBytes(entries, int(n)*entrySize)
	if err != nil {
		return nil, fmt.Errorf("reading dict entries: %w", err)
	}
	var vals []uint64
	if values != 0 && n > 0 {
		if vals, err = d.ptrArray(values, int(n)); err != nil {
			return nil, fmt.Errorf("reading split dict values: %w", err)
		}
	}
	var out []DictItem
	for i := 0; i < int(n); i++ {
		e := b[i*entrySize:]
		k := memory.Order.Uint64(e[keyOff:])
		v := memory.Order.Uint64(e[valOff:])
		if vals != nil {
			v = vals[i]
		}
		if k == 0 || v == 0 {
			continue
		}
		if len(out) >= max {
			return nil, fmt.Errorf("dict keys at %#x have more than %d items: %w", keys, max, memory.ErrTooLarge)
		}
		out = append(out, DictItem{k, v})
	}
	return out, nil
}

// AttrGet returns the value of the instance attribute name of obj, read
// from the instance's own dictionary: tp_dictoffset (≤3.10), the managed
// dict or values pointer (3.11, 3.12) or the managed dict or inline
// values (3.13+). Class attributes, slots and properties are not seen.
// It fails with ErrKeyNotFound when the instance has no such attribute
// (or no dictionary at all).
func AttrGet(r memory.Reader, l *layout.Layout, obj uint64, name string) (uint64, error) {
	d := newDecoder(r, l)
	items, err := d.instanceItems(obj)
	if err != nil {
		return 0, err
	}
	return d.findKey(items, name)
}

// instanceItems returns the items of obj's instance dictionary.
func (d *decoder) instanceItems(obj uint64) ([]DictItem, error) {
	l := d.l
	t, err := d.typeOf(obj)
	if err != nil {
		return nil, err
	}
	if l.Major == 3 && l.Minor >= 11 && t.flags&tpflagsManagedDict != 0 {
		return d.managedItems(obj, t)
	}
	off, err := memory.I64(d.r, t.addr+uint64(l.TypeTpDictoffset))
	if err != nil {
		return nil, fmt.Errorf("reading tp_dictoffset: %w", err)
	}
	if off <= 0 || off > 1<<20 {
		// Negative offsets (variable-size objects) are not supported.
		return nil, fmt.Errorf("type %q has no instance dict at a fixed offset: %w", t.name, ErrKeyNotFound)
	}
	dict, err := memory.Ptr(d.r, obj+uint64(off))
	if err != nil {
		return nil, fmt.Errorf("reading instance dict: %w", err)
	}
	if dict == 0 {
		return nil, fmt.Errorf("instance at %#x has no dict yet: %w", obj, ErrKeyNotFound)
	}
	return d.dictItems(dict, maxDictEntries)
}

// managedItems reads the attributes of an object whose type has
// Py_TPFLAGS_MANAGED_DICT (3.11+).
func (d *decoder) managedItems(obj uint64, t *typeInfo) ([]DictItem, error) {
	l := d.l
	slot, err := memory.Ptr(d.r, obj-3*8) // the managed dict pointer (3.11–3.14)
	if err != nil {
		return nil, fmt.Errorf("reading managed dict: %w", err)
	}
	var values uint64
	switch {
	case l.Minor == 11:
		if slot != 0 {
			return d.dictItems(slot, maxDictEntries)
		}
		if values, err = memory.Ptr(d.r, obj-4*8); err != nil {
			return nil, fmt.Errorf("reading managed values: %w", err)
		}
	case l.Minor == 12:
		// PyDictOrValues: a dict, or a values pointer minus 1 (odd).
		if slot&1 == 0 {
			if slot == 0 {
				return nil, fmt.Errorf("instance at %#x has no dict: %w", obj, ErrKeyNotFound)
			}
			return d.dictItems(slot, maxDictEntries)
		}
		values = slot + 1
	default:
		if slot != 0 {
			return d.dictItems(slot, maxDictEntries)
		}
		if t.flags&tpflagsInlineValues == 0 {
			return nil, fmt.Errorf("instance at %#x has no dict: %w", obj, ErrKeyNotFound)
		}
		basic, err := memory.I64(d.r, t.addr+uint64(l.TypeTpBasicsize))
		if err != nil {
			return nil, fmt.Errorf("reading tp_basicsize: %w", err)
		}
		if basic <= 0 || basic > 1<<20 {
			return nil, fmt.Errorf("type %q has basic size %d: %w", t.name, basic, memory.ErrTooLarge)
		}
		values = obj + uint64(basic)
		// PyDictValues.valid (3.13: capacity, size, embedded, valid).
		valid, err := memory.U8(d.r, values+3)
		if err != nil {
			return nil, fmt.Errorf("reading inline values: %w", err)
		}
		if valid == 0 {
			return nil, fmt.Errorf("instance at %#x has invalid inline values: %w", obj, ErrKeyNotFound)
		}
	}
	if values == 0 {
		return nil, fmt.Errorf("instance at %#x has no dict: %w", obj, ErrKeyNotFound)
	}
	keys, err := memory.NonNullPtr(d.r, t.addr+uint64(l.HeapTypeHtCachedKeys))
	if err != nil {
		return nil, fmt.Errorf("reading ht_cached_keys: %w", err)
	}
	return d.keysItems(keys, values+uint64(l.DictValuesValues), maxDictEntries)
}

// isASCII reports whether s is all ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
