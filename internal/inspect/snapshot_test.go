package inspect

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/pyglass/pyglass/memory"
)

// listMemory is a fake target: a linked list of nodes, each on its own
// page ({value, next}), whose head pointer is at listHead. The "target"
// changes it between the reads of pausedRead.
type listMemory struct {
	mem   memory.Fake
	pages map[uint64][]byte
}

const listHead = 0x10000

func newListMemory() *listMemory {
	l := &listMemory{pages: map[uint64][]byte{}}
	for a := uint64(listHead); a < listHead+64*pageSize; a += pageSize {
		b := make([]byte, pageSize)
		l.pages[a] = b
		l.mem.Map(a, b)
	}
	return l
}

// set makes the list hold values, node i on page i+1.
func (l *listMemory) set(values ...uint64) {
	next := uint64(0)
	for i := len(values) - 1; i >= 0; i-- {
		node := uint64(listHead + (i+1)*pageSize)
		binary.LittleEndian.PutUint64(l.pages[node], values[i])
		binary.LittleEndian.PutUint64(l.pages[node][8:], next)
		next = node
	}
	binary.LittleEndian.PutUint64(l.pages[listHead], next)
}

// walk reads the list through r.
func walk(r memory.Reader, out *[]uint64) error {
	*out = nil
	node, err := memory.Ptr(r, listHead)
	for n := 0; err == nil && node != 0 && n < 64; n++ {
		var v uint64
		if v, err = memory.U64(r, node); err != nil {
			break
		}
		*out = append(*out, v)
		node, err = memory.Ptr(r, node+8)
	}
	return err
}

// TestPausedRead: what pausedRead returns is the list as it was while
// "paused", never a mix: the target rewrites its list between the first
// pass and the pause (in place: the copy differs, the walk runs on it
// again; or grown onto a page the first pass did not touch: another
// round), and as soon as it is thawed (the final walk must not see that);
// bytes of the pages walked that the walk did not read may change
// meanwhile without a second walk. A target that changes before every pause ends in the walk while
// paused; one that does not change is walked once.
func TestPausedRead(t *testing.T) {
	for _, c := range []struct {
		name    string
		change  func(l *listMemory, freezes int, atPause []uint64) // before each pause
		freezes int
		reads   int
	}{
		{"steady", func(*listMemory, int, []uint64) {}, 1, 1},
		{"in place", func(l *listMemory, n int, _ []uint64) {
			if n == 0 {
				l.set(5, 6)
			}
		}, 1, 2},
		{"unread bytes", func(l *listMemory, n int, _ []uint64) {
			// Bytes the walk never read, on pages it read: its
			// result stands (a busy target always changes some).
			l.pages[listHead][64]++
			l.pages[listHead+pageSize][pageSize-1]++
		}, 1, 1},
		{"grows once", func(l *listMemory, n int, _ []uint64) {
			if n == 0 {
				l.set(1, 2, 10)
			}
		}, 2, 3},
		{"always grows", func(l *listMemory, n int, atPause []uint64) {
			l.set(append(atPause, 1, 2, uint64(10+n))...)
		}, snapshotRounds + 1, snapshotRounds + 2},
	} {
		l := newListMemory()
		l.set(1, 2)
		freezes, frozen, reads := 0, false, 0
		var atPause []uint64
		freeze := func() (func(), error) {
			c.change(l, freezes, atPause)
			freezes++
			frozen = true
			walk(&l.mem, &atPause)
			return func() {
				frozen = false
				l.set(99) // the target runs on
			}, nil
		}
		var got []uint64
		paused, err := pausedRead(&l.mem, freeze, func(r memory.Reader) error {
			reads++
			return walk(r, &got)
		})
		if err != nil || frozen || freezes != c.freezes || reads != c.reads || paused <= 0 {
			t.Errorf("%s: err %v, frozen after %v, %d freezes (want %d), %d walks (want %d), paused %v", c.name, err, frozen, freezes, c.freezes, reads, c.reads, paused)
		}
		if !slices.Equal(got, atPause) {
			t.Errorf("%s: read %v, the list while paused was %v", c.name, got, atPause)
		}
	}
	// A freeze that fails: its error, as is.
	l := newListMemory()
	l.set(1)
	bad := errors.New("no such process")
	_, err := pausedRead(&l.mem, func() (func(), error) { return nil, bad }, func(r memory.Reader) error { var v []uint64; return walk(r, &v) })
	if !errors.Is(err, bad) {
		t.Errorf("failed freeze: %v", err)
	}
}
