package cli

import (
	"testing"
	"time"

	"github.com/pyglass/pyglass"
)

// TestTopRate: the header's rate is an interval's samples over its own
// length, from the first sample on (not from before the attach).
func TestTopRate(t *testing.T) {
	st := newTopState(false)
	time.Sleep(2 * time.Millisecond) // the attach: not part of the first interval
	before := time.Now()
	for range 50 {
		st.add(&pyglass.Sample{})
	}
	first := st.opened
	if first.Before(before) {
		t.Fatalf("the first interval opened %v before its first sample", before.Sub(first))
	}
	st.tick(first.Add(500 * time.Millisecond))
	if st.lastRate != 100 {
		t.Errorf("50 samples in 500 ms: %v samples/s, want 100", st.lastRate)
	}
	for range 30 {
		st.add(&pyglass.Sample{})
	}
	st.tick(first.Add(2 * time.Second))
	if st.lastRate != 20 {
		t.Errorf("30 samples in 1.5 s: %v samples/s, want 20", st.lastRate)
	}
	if d := st.open(first.Add(2*time.Second + 100*time.Millisecond)); d != 100*time.Millisecond {
		t.Errorf("open %v after the last tick, want 100ms", d)
	}
}
