// Package unwind walks a thread's native (C) stack from its registers,
// with the DWARF call-frame information of .eh_frame found through
// .eh_frame_hdr, else of .debug_frame (read from the object's file and
// indexed once, for code built without unwind tables), falling back to
// frame pointers where there is neither.
//
// It reads the target only through memory.Reader (a live process or a
// core file alike) and everything it reads is hostile: every record is
// bounded in size, every loop in steps, and a malformed record ends the
// walk with an error, never a panic.
package unwind
