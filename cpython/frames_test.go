package cpython

import (
	_ "embed"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target/live"
)

//go:embed testdata/frames_fixture.py
var framesFixture string

// fixtureTruth is what testdata/frames_fixture.py prints.
type fixtureTruth struct {
	Frame  uint64  `json:"frame"`
	Stack  [][]any `json:"stack"` // [file, line, name, locals|null]
	Checks struct {
		Dict    [][]any `json:"dict"`    // [dict, key, value|0]
		Attr    [][]any `json:"attr"`    // [obj, name, value|0]
		DictInt [][]any `json:"dictint"` // [dict, int key, value|0]
		Type    [][]any `json:"type"`    // [obj, tp_name]
	} `json:"checks"`
}

// liveFixture starts the frames fixture on in and returns its memory,
// layout, ground truth and the address of its main thread's top frame.
func liveFixture(t *testing.T, in testenv.Interp) (memory.Reader, *layout.Layout, *fixtureTruth, uint64) {
	t.Helper()
	l, err := layout.For(in.Major, in.Minor)
	if errors.Is(err, layout.ErrNoTable) {
		testenv.Skipf(t, "no generated layout for %s (needs _Py_DebugOffsets from the process): %v", in.Label, err)
	}
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	tg := testenv.Start(t, in, framesFixture)
	var truth fixtureTruth
	for _, line := range tg.Stdout() {
		if rest, ok := strings.CutPrefix(line, "READY "); ok {
			d := json.NewDecoder(strings.NewReader(rest))
			d.UseNumber()
			if err := d.Decode(&truth); err != nil {
				t.Fatalf("decoding fixture output: %v", err)
			}
		}
	}
	if truth.Frame == 0 {
		t.Fatalf("fixture printed no READY line with a frame: %q", tg.Stdout())
	}
	p, err := live.Open(tg.PID)
	if err != nil {
		t.Fatalf("opening target: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	top := truth.Frame
	if l.AtLeast(3, 11) {
		// id(sys._getframe()) is a PyFrameObject; its f_frame is the
		// _PyInterpreterFrame the thread runs.
		if top, err = memory.NonNullPtr(p, truth.Frame+uint64(l.FrameFFrame)); err != nil {
			t.Fatalf("reading f_frame: %v", err)
		}
	}
	return p, l, &truth, top
}

func num(t *testing.T, v any) uint64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("not a number: %#v", v)
	}
	u, err := n.Int64()
	if err != nil {
		t.Fatalf("bad number %v: %v", n, err)
	}
	return uint64(u)
}

// TestFramesLive reads the main thread's stack of a fixture program on
// every interpreter and compares each frame's file, line, function and
// locals with what the interpreter itself reports.
func TestFramesLive(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		r, l, truth, top := liveFixture(t, in)
		frames, err := Frames(r, l, top, FrameOptions{Locals: true})
		if err != nil {
			t.Fatalf("Frames: %v", err)
		}
		if len(frames) != len(truth.Stack) {
			t.Errorf("got %d frames, want %d", len(frames), len(truth.Stack))
		}
		if len(truth.Stack) < 500 {
			t.Errorf("fixture stack has only %d frames", len(truth.Stack))
		}
		bad := 0
		for i := 0; i < len(frames) && i < len(truth.Stack); i++ {
			w := truth.Stack[i]
			f := frames[i]
			wantFile, wantLine, wantName := w[0].(string), int(num(t, w[1])), w[2].(string)
			if f.File != wantFile || f.Line != wantLine || f.Function != wantName {
				if bad++; bad <= 10 {
					t.Errorf("frame %d: got %s:%d %s, want %s:%d %s", i, f.File, f.Line, f.Function, wantFile, wantLine, wantName)
				}
				continue
			}
			if w[3] == nil {
				continue
			}
			want := map[string]string{}
			for k, v := range w[3].(map[string]any) {
				want[k] = v.(string)
			}
			for k, v := range want {
				if f.Locals[k] != v {
					if bad++; bad <= 30 {
						t.Errorf("frame %d (%s) local %q: got %q, want %q", i, f.Function, k, f.Locals[k], v)
					}
				}
			}
			for k := range f.Locals {
				if _, ok := want[k]; !ok {
					if bad++; bad <= 30 {
						t.Errorf("frame %d (%s): extra local %q = %q", i, f.Function, k, f.Locals[k])
					}
				}
			}
			if len(f.LocalNames) != len(f.Locals) {
				t.Errorf("frame %d: %d local names for %d locals", i, len(f.LocalNames), len(f.Locals))
			}
		}
		if len(frames) > 0 {
			t.Logf("%d frames; innermost %s:%d %s; %d locals", len(frames), frames[len(frames)-1].File,
				frames[len(frames)-1].Line, frames[len(frames)-1].Function, len(frames[len(frames)-1].Locals))
		}

		// Without locals, and with a small depth bound.
		plain, err := Frames(r, l, top, FrameOptions{})
		if err != nil || len(plain) != len(frames) || plain[0].Locals != nil {
			t.Errorf("Frames without locals: %d frames, err %v", len(plain), err)
		}
		short, err := Frames(r, l, top, FrameOptions{MaxDepth: 10})
		if !errors.Is(err, ErrTooDeep) || len(short) != 10 {
			t.Errorf("Frames with MaxDepth 10: %d frames, err %v", len(short), err)
		}
	})
}

// TestObjectsLive checks DictGet, AttrGet and TypeName on objects of a
// live fixture.
func TestObjectsLive(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		r, l, truth, _ := liveFixture(t, in)
		for _, c := range truth.Checks.Dict {
			obj, key, want := num(t, c[0]), c[1].(string), num(t, c[2])
			got, err := DictGet(r, l, obj, key)
			switch {
			case want == 0 && !errors.Is(err, ErrKeyNotFound):
				t.Errorf("DictGet(%#x, %q) = %#x, %v; want ErrKeyNotFound", obj, key, got, err)
			case want != 0 && (err != nil || got != want):
				t.Errorf("DictGet(%#x, %q) = %#x, %v; want %#x", obj, key, got, err, want)
			}
		}
		for _, c := range truth.Checks.Attr {
			obj, key, want := num(t, c[0]), c[1].(string), num(t, c[2])
			got, err := AttrGet(r, l, obj, key)
			switch {
			case want == 0 && !errors.Is(err, ErrKeyNotFound):
				t.Errorf("AttrGet(%#x, %q) = %#x, %v; want ErrKeyNotFound", obj, key, got, err)
			case want != 0 && (err != nil || got != want):
				t.Errorf("AttrGet(%#x, %q) = %#x, %v; want %#x", obj, key, got, err, want)
			}
		}
		for _, c := range truth.Checks.DictInt {
			obj, key, want := num(t, c[0]), int64(num(t, c[1])), num(t, c[2])
			got, err := DictGetInt(r, l, obj, key)
			switch {
			case want == 0 && !errors.Is(err, ErrKeyNotFound):
				t.Errorf("DictGetInt(%#x, %d) = %#x, %v; want ErrKeyNotFound", obj, key, got, err)
			case want != 0 && (err != nil || got != want):
				t.Errorf("DictGetInt(%#x, %d) = %#x, %v; want %#x", obj, key, got, err, want)
			}
		}
		if len(truth.Checks.DictInt) == 0 {
			t.Error("fixture printed no int-key checks")
		}
		for _, c := range truth.Checks.Type {
			obj, want := num(t, c[0]), c[1].(string)
			if got, err := TypeName(r, l, obj); err != nil || got != want {
				t.Errorf("TypeName(%#x) = %q, %v; want %q", obj, got, err, want)
			}
		}
	})
}
