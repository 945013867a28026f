package pyglass

import (
	"runtime/debug"
	"sync"
)

// The Go collector during a pause of the target: a cycle that runs while
// the target's threads are held takes the CPU the read needs (every
// allocation of the read pays a share of the marking, and a worker
// takes one of the processors), so the target waits the longer. On two
// cores, locks' pause of 11 threads of CPython 2.7 was 1.4 times
// stacks' when a cycle started by what locks reads before its pause
// (the modules' symbols) was still marking. holdGC ends a cycle under
// way before the pause (SetGCPercent(-1) waits for its marking to end)
// and starts none until the last pause under way ends; a pause
// allocates at most some megabytes (the pages and frames it reads).
var gcHold struct {
	sync.Mutex
	n       int // pauses under way
	percent int // the setting to restore when the last ends
}

// holdGC is called before a pause; the function it returns, after it
// (calls after the first do nothing).
func holdGC() (release func()) {
	gcHold.Lock()
	if gcHold.n == 0 {
		gcHold.percent = debug.SetGCPercent(-1)
	}
	gcHold.n++
	gcHold.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			gcHold.Lock()
			if gcHold.n--; gcHold.n == 0 {
				debug.SetGCPercent(gcHold.percent)
			}
			gcHold.Unlock()
		})
	}
}
