// Package memory defines how pyglass reads another process's memory.
//
// Everything that decodes CPython structures sees memory only through
// Reader, so a live process, a core file and a fake in a unit test are
// interchangeable. Typed reads return errors; they never return a zero
// value in place of a failure.
package memory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Reader reads the memory of some address space.
//
// ReadAt fills p with the bytes at addr. It returns the number of bytes
// read; when that is less than len(p) the error is non-nil (ErrShortRead
// or ErrFault wrapped with detail).
type Reader interface {
	ReadAt(p []byte, addr uint64) (int, error)
}

var (
	// ErrFault is returned when an address is not mapped or not readable.
	ErrFault = errors.New("address not readable")
	// ErrShortRead is returned when only part of a range could be read.
	ErrShortRead = errors.New("short read")
	// ErrTooLarge is returned when a length read from the target exceeds
	// the caller's bound (a forged or corrupted size).
	ErrTooLarge = errors.New("length out of bounds")
	// ErrNull is returned when a pointer that must be set is zero.
	ErrNull = errors.New("null pointer")
)

// Order is the byte order of every target pyglass supports (amd64, arm64).
var Order = binary.LittleEndian

// Read reads exactly len(p) bytes at addr.
func Read(r Reader, addr uint64, p []byte) error {
	n, err := r.ReadAt(p, addr)
	if err != nil {
		return fmt.Errorf("reading %d bytes at %#x: %w", len(p), addr, err)
	}
	if n != len(p) {
		return fmt.Errorf("reading %d bytes at %#x: %w", len(p), addr, ErrShortRead)
	}
	return nil
}

// A WordReader is a Reader that can answer a small read without a
// buffer: a cache that holds the bytes. U8 to U64 ask it first (a buffer
// handed to ReadAt escapes to the heap: an allocation per word read).
// Word returns the little-endian value of the size (1, 2, 4 or 8) bytes
// at addr, or ok false when ReadAt must answer (bytes it does not hold,
// or an error to report).
type WordReader interface {
	Reader
	Word(addr uint64, size int) (v uint64, ok bool)
}

// word reads size bytes at addr as a little-endian value, from a
// WordReader's bytes when it has them.
func word(r Reader, addr uint64, size int) (uint64, error) {
	if w, ok := r.(WordReader); ok {
		if v, ok := w.Word(addr, size); ok {
			return v, nil
		}
	}
	return readWord(r, addr, size)
}

// readWord is word's ReadAt path.
func readWord(r Reader, addr uint64, size int) (uint64, error) {
	var b [8]byte
	if err := Read(r, addr, b[:size]); err != nil {
		return 0, err
	}
	return Order.Uint64(b[:]), nil
}

// U8 reads one byte.
func U8(r Reader, addr uint64) (uint8, error) {
	v, err := word(r, addr, 1)
	return uint8(v), err
}

// U16 reads a little-endian uint16.
func U16(r Reader, addr uint64) (uint16, error) {
	v, err := word(r, addr, 2)
	return uint16(v), err
}

// U32 reads a little-endian uint32.
func U32(r Reader, addr uint64) (uint32, error) {
	v, err := word(r, addr, 4)
	return uint32(v), err
}

// I32 reads a little-endian int32.
func I32(r Reader, addr uint64) (int32, error) {
	v, err := U32(r, addr)
	return int32(v), err
}

// U64 reads a little-endian uint64.
func U64(r Reader, addr uint64) (uint64, error) { return word(r, addr, 8) }

// I64 reads a little-endian int64.
func I64(r Reader, addr uint64) (int64, error) {
	v, err := U64(r, addr)
	return int64(v), err
}

// Ptr reads a pointer (64-bit targets only).
func Ptr(r Reader, addr uint64) (uint64, error) { return U64(r, addr) }

// NonNullPtr reads a pointer and fails with ErrNull when it is zero.
func NonNullPtr(r Reader, addr uint64) (uint64, error) {
	p, err := U64(r, addr)
	if err == nil && p == 0 {
		err = fmt.Errorf("pointer at %#x: %w", addr, ErrNull)
	}
	return p, err
}

// Bytes reads n bytes at addr, refusing n larger than max.
func Bytes(r Reader, addr uint64, n, max int) ([]byte, error) {
	if n < 0 || n > max {
		return nil, fmt.Errorf("%d bytes at %#x (limit %d): %w", n, addr, max, ErrTooLarge)
	}
	p := make([]byte, n)
	if err := Read(r, addr, p); err != nil {
		return nil, err
	}
	return p, nil
}

// CString reads a NUL-terminated string of at most max bytes.
func CString(r Reader, addr uint64, max int) (string, error) {
	var out []byte
	var chunk [64]byte
	for len(out) < max {
		n := len(chunk)
		if max-len(out) < n {
			n = max - len(out)
		}
		// Read byte-wise at the end of a page to avoid faulting past it.
		if rem := int(4096 - (addr+uint64(len(out)))%4096); rem < n {
			n = rem
		}
		if err := Read(r, addr+uint64(len(out)), chunk[:n]); err != nil {
			return "", err
		}
		for i := 0; i < n; i++ {
			if chunk[i] == 0 {
				return string(append(out, chunk[:i]...)), nil
			}
		}
		out = append(out, chunk[:n]...)
	}
	return "", fmt.Errorf("string at %#x longer than %d bytes: %w", addr, max, ErrTooLarge)
}

// ValidUTF8 reports whether s decodes cleanly; decoders use it to reject
// garbage read from a wrong address.
func ValidUTF8(s string) bool { return utf8.ValidString(s) }
