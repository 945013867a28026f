package memory

import "io"

// Section reads the size bytes of r at base as an io.ReaderAt whose
// offsets start at base: a module mapped whole (the vDSO) read as its
// file. A read past the end returns io.EOF, as a file's does.
func Section(r Reader, base, size uint64) io.ReaderAt {
	return section{r: r, base: base, size: size}
}

type section struct {
	r          Reader
	base, size uint64
}

func (s section) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || uint64(off) >= s.size {
		return 0, io.EOF
	}
	n := min(uint64(len(p)), s.size-uint64(off))
	if err := Read(s.r, s.base+uint64(off), p[:n]); err != nil {
		return 0, err
	}
	if n < uint64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}
