package cpython

import (
	"encoding/json"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// reprScript reads {"floats": [hex...], "strs": [...]} on stdin and
// prints Python's repr of each (Python 2.7 and 3.x).
const reprScript = `
import json, sys
d = json.loads(sys.stdin.read())
out = {"floats": [repr(float.fromhex(h)) for h in d["floats"]]}
if sys.version_info[0] >= 3:
    out["strs"] = [repr(s) for s in d["strs"]]
    out["bytes"] = [repr(s.encode("latin-1")) for s in d["bytes"]]
else:
    out["strs"] = [repr(s) for s in d["strs"]]  # unicode: u'...'
    out["bytes"] = [repr(s.encode("latin-1")) for s in d["bytes"]]
sys.stdout.write(json.dumps(out))
`

// TestReprAgainstPython compares FloatRepr and the str/bytes quoting of
// Repr with the repr() of every interpreter, on random values.
func TestReprAgainstPython(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	var floats []float64
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e16, 1e15, 9999999999999998, 1e-4, 1e-5,
		5e-324, math.MaxFloat64, math.Inf(1), math.Inf(-1), 123.456, 1.5e300, 2.5e-300} {
		floats = append(floats, v)
	}
	for i := 0; i < 300; i++ {
		floats = append(floats, math.Float64frombits(rng.Uint64()))
		floats = append(floats, rng.NormFloat64()*math.Pow(10, float64(rng.Intn(40)-20)))
		floats = append(floats, float64(rng.Intn(1e6))/float64(1+rng.Intn(1000)))
	}
	var fhex []string
	var fin []float64
	for _, f := range floats {
		if math.IsNaN(f) {
			continue
		}
		fin = append(fin, f)
		fhex = append(fhex, strconv.FormatFloat(f, 'x', -1, 64))
	}
	// Characters whose printability is the same in every Unicode
	// version these interpreters use.
	alphabet := []rune("aZ09 '\"\\\t\n\r\x00\x01\x1f\x7f\x80\x9f\xa0\xa9\xe9\xff\u0100\u03bb\u2028\u2603\u4e2d\ufeff\U0001f600\U00010000")
	var strs, bytesIn []string
	for i := 0; i < 200; i++ {
		var sb, bb strings.Builder
		for j := rng.Intn(12); j >= 0; j-- {
			sb.WriteRune(alphabet[rng.Intn(len(alphabet))])
			bb.WriteRune(rune(rng.Intn(256)))
		}
		strs = append(strs, sb.String())
		bytesIn = append(bytesIn, bb.String())
	}
	in, _ := json.Marshal(map[string]any{"floats": fhex, "strs": strs, "bytes": bytesIn})
	testenv.ForEach(t, func(t *testing.T, py testenv.Interp) {
		t.Parallel()
		cmd := py.Command("-c", reprScript)
		cmd.Stdin = strings.NewReader(string(in))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("running python: %v", err)
		}
		var got struct{ Floats, Strs, Bytes []string }
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("decoding: %v", err)
		}
		bad := 0
		for i, want := range got.Floats {
			if g := FloatRepr(fin[i]); g != want {
				if bad++; bad < 10 {
					t.Errorf("FloatRepr(%s) = %q, want %q", fhex[i], g, want)
				}
			}
		}
		for i, want := range got.Strs {
			var g string
			if py.Major >= 3 {
				g = quoteStr(strs[i], false)
			} else {
				g = "u" + quoteStr(strs[i], true)
			}
			if g != want {
				if bad++; bad < 20 {
					t.Errorf("str repr of %+q = %s, want %s", strs[i], g, want)
				}
			}
		}
		for i, want := range got.Bytes {
			raw := make([]byte, 0, len(bytesIn[i]))
			for _, r := range bytesIn[i] {
				raw = append(raw, byte(r))
			}
			g := quoteBytes(string(raw))
			if py.Major >= 3 {
				g = "b" + g
			}
			if g != want {
				if bad++; bad < 30 {
					t.Errorf("bytes repr of %q = %s, want %s", raw, g, want)
				}
			}
		}
	})
}
