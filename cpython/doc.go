// Package cpython understands a CPython interpreter's structures in
// another address space: it finds the interpreters, their threads and
// which holds the GIL, walks each thread's frames, decodes line tables,
// strings, ints, dicts and short reprs of locals.
//
// It reads memory only through memory.Reader and knows the structures
// only through a *layout.Layout, so a live process, a core file and fake
// memory in a unit test are the same to it. It never imports code that
// talks to the kernel. Every value read is untrusted: lengths are bounded,
// loops are bounded and detect cycles, and one unreadable thread or frame
// is an error for that thread only.
package cpython
