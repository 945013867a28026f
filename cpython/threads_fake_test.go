package cpython

import "testing"

// set64 writes v at addr+off in the region that holds addr.
func (h *fakeHeap) set64(addr uint64, off int, v uint64) {
	h.t.Helper()
	for _, r := range h.regions {
		if addr >= r.addr && addr+uint64(off)+8 <= r.addr+uint64(len(r.data)) {
			put64(r.data, int(addr-r.addr)+off, v)
			return
		}
	}
	h.t.Fatalf("no region holds %#x+%d", addr, off)
}

// TestInstanceOf: a threading._active value names a thread only when its
// class has threading.Thread in its __mro__. Read without pausing, an
// entry may point at a freed Thread whose memory now holds another
// object; that object is not taken for a thread.
func TestInstanceOf(t *testing.T) {
	for _, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		d := newDecoder(h.m, h.l)
		object := h.typ("object", 0)
		thread := h.typ("Thread", 0)
		sub := h.typ("Worker", 0)
		other := h.typ("dict", 0)
		h.set64(object, h.l.TypeTpMro, h.tuple(object))
		h.set64(thread, h.l.TypeTpMro, h.tuple(thread, object))
		h.set64(sub, h.l.TypeTpMro, h.tuple(sub, thread, object))
		h.set64(other, h.l.TypeTpMro, h.tuple(other, object))
		noMRO := h.typ("broken", 0) // tp_mro NULL
		for _, c := range []struct {
			tp   uint64
			want bool
		}{{thread, true}, {sub, true}, {other, false}, {object, false}, {noMRO, false}} {
			obj, _ := h.object(c.tp, 64)
			if got := d.instanceOf(obj, thread); got != c.want {
				t.Errorf("%d.%d: instance of type %#x is a Thread: %v, want %v", v[0], v[1], c.tp, got, c.want)
			}
		}
		if d.instanceOf(0x10, thread) {
			t.Errorf("%d.%d: unmapped object taken for a Thread", v[0], v[1])
		}
	}
}
