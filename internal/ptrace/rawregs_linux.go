package ptrace

import "unsafe"

// RawRegs returns each held thread's general registers laid out as an ELF
// core's NT_PRSTATUS holds them (struct user_regs_struct on amd64,
// user_pt_regs on arm64). A thread whose registers cannot be read is left
// out.
func (f *Frozen) RawRegs() map[int][]byte {
	out := make(map[int][]byte, len(f.Tids))
	if f.t == nil {
		return out
	}
	f.t.Do(func() error {
		for _, tid := range f.Tids {
			r, err := GetRegs(tid)
			if err != nil {
				continue
			}
			out[tid] = append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))...)
		}
		return nil
	})
	return out
}
