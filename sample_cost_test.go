package pyglass

import (
	"context"
	"errors"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

var errSampledEnough = errors.New("enough samples")

// BenchmarkSample takes b.N samples of the profiler target (10 threads,
// idle ones included) on the interpreter PYGLASS_BENCH_PYTHON names (a
// testenv label; the newest pyenv 3.x otherwise), at PYGLASS_BENCH_RATE
// (as fast as it goes otherwise), and reports per sample the sampler's
// CPU time, its memory reads (system calls) and the bytes its vectored
// reads copy.
// PYGLASS_BENCH_CPUPROFILE=FILE writes a CPU profile of the sampling
// taken at 2 kHz (go test's -cpuprofile takes 100 Hz).
func BenchmarkSample(b *testing.B) {
	label := os.Getenv("PYGLASS_BENCH_PYTHON")
	var in testenv.Interp
	for _, i := range testenv.Interpreters() {
		if (label == "" && i.Chroot == "" && i.Major == 3) || i.Label == label {
			in = i
		}
	}
	if in.Label == "" {
		b.Skip("no interpreter")
	}
	tg := testenv.Start(b, in, testenv.Fixture(b, "profile_target.py"))
	p, err := Attach(tg.PID)
	if err != nil {
		b.Fatal(err)
	}
	rate := MaxRate
	if r, err := strconv.ParseFloat(os.Getenv("PYGLASS_BENCH_RATE"), 64); err == nil {
		rate = r
	}
	var reads, bytes int64
	p.memHook = func(r memory.Reader) memory.Reader { return &syscallCounter{r: r, n: &reads, bytes: &bytes} }
	if path := os.Getenv("PYGLASS_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		runtime.SetCPUProfileRate(2000)
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	stats, err := p.Sample(context.Background(), SampleOptions{Rate: rate, Idle: true}, func(s *Sample) error {
		n++
		if n >= b.N {
			return errSampledEnough
		}
		return nil
	})
	if err != nil && err != errSampledEnough {
		b.Fatal(err)
	}
	ns := float64(max(stats.Samples, 1))
	b.ReportMetric(float64(stats.CPU.Nanoseconds())/ns, "cpu-ns/sample")
	b.ReportMetric(float64(reads)/ns, "reads/sample")
	b.ReportMetric(float64(bytes)/ns, "bytes/sample")
	b.ReportMetric(float64(stats.Samples)/stats.Elapsed.Seconds(), "samples/s")
	b.Logf("%s: %+v", in.Label, stats)
}

// syscallCounter counts the reads of a target's memory (each one system
// call on a live target), without a lock: the sampler reads from one
// goroutine.
type syscallCounter struct {
	r     memory.Reader
	n     *int64
	bytes *int64
}

func (c *syscallCounter) ReadAt(p []byte, addr uint64) (int, error) {
	*c.n++
	return c.r.ReadAt(p, addr)
}

func (c *syscallCounter) ReadV(segs []memory.Segment) {
	*c.n++
	for _, sg := range segs {
		*c.bytes += int64(len(sg.Buf))
	}
	memory.ReadV(c.r, segs)
}
