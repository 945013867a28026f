package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/leak"
)

// garbageWarmUp imports what the agent imports and formats a traceback and
// a syntax error once, then collects: the first import of some standard
// modules leaves cyclic garbage of its own (pure Python classes replaced
// by their C versions), which is not pyglass's.
const garbageWarmUp = `import ast, codecs, gc, linecache, time, traceback
try:
    raise ValueError('warm up')
except ValueError:
    traceback.format_exc()
try:
    compile('def f(:', '<warm-up>', 'exec')
except SyntaxError:
    traceback.format_exc()
gc.collect()
`

// garbageCheck collects with gc.DEBUG_SAVEALL and prints
// "GARBAGE total=N agent=M" and a summary of what it found; gc.garbage and
// the debug flags are left as they were.
const garbageCheck = `import gc, sys, types
def agent_kind(o):
    t = type(o)
    if getattr(t, '__module__', None) == '__pyglass_agent__':
        return 'instance'
    if isinstance(o, type) and o.__module__ == '__pyglass_agent__':
        return 'class'
    if isinstance(o, types.FunctionType) and (o.__module__ == '__pyglass_agent__' or '_PYGLASS_DIR' in o.__globals__):
        return 'function'
    if isinstance(o, types.FrameType) and o.f_code.co_filename == '<pyglass-agent>':
        return 'frame'
    if isinstance(o, types.CodeType) and o.co_filename == '<pyglass-agent>':
        return 'code'
    if isinstance(o, types.ModuleType) and o.__name__ == 'pyglass_router':
        return 'router'
    if t.__module__ == 'codecs' and t.__name__ in ('StreamWriter', 'StreamReader'):
        return 'router'
    if t.__name__ == 'socket':
        return 'socket'
    if isinstance(o, dict):
        if '_PYGLASS_DIR' in o or o.get('__name__') in ('__pyglass_agent__', '__pyglass__'):
            return 'namespace'
        if list(o) == ['__builtins__']:
            return 'namespace'
        if 'sessions' in o and 'pg' in o or 'sock' in o and 'pending' in o:
            return 'hub-or-session'
    return None
flags = gc.get_debug()
saved = list(gc.garbage)
gc.set_debug(flags | gc.DEBUG_SAVEALL)
try:
    gc.collect()
    found = gc.garbage[len(saved):]
    gc.garbage[:] = saved
finally:
    gc.set_debug(flags)
kinds = {}
agent = 0
for o in found:
    k = None
    try:
        k = agent_kind(o)
    except Exception:
        pass
    if k:
        agent += 1
    key = '%s%s.%s' % (k and k + ':' or '', type(o).__module__, type(o).__name__)
    kinds[key] = kinds.get(key, 0) + 1
n = len(found)
o = None
del found, saved
gc.collect()
print('GARBAGE total=%d agent=%d %s' % (n, agent, ' '.join('%s=%d' % kv for kv in sorted(kinds.items()))))
`

// TestAgentLeavesNoGarbage: after execs of every kind (output, tracebacks,
// syntax errors, SystemExit, a script, binary output), shells (piped, in
// the fresh and the main namespace, one open while execs run), in a target
// whose main thread keeps printing, a collection with gc.DEBUG_SAVEALL in
// the target finds nothing at all: the agent left no object behind, not
// even as cyclic garbage awaiting the collector. The leak report says the
// same on 3.x.
func TestAgentLeavesNoGarbage(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("interval=0.01", "threads=1"))
		pid := strconv.Itoa(tg.PID)
		want(t, run(t, nil, "exec", pid, "-c", garbageWarmUp), 0)

		script := filepath.Join(t.TempDir(), "s.py")
		if err := os.WriteFile(script, []byte("def f():\n    raise KeyError('k')\nf()\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		execs := []struct {
			args []string
			code int
		}{
			{[]string{"-c", "print('hello')"}, 0},
			{[]string{"-c", "import sys\nfor i in range(2000): sys.stdout.write('%d\\n' % i)\nsys.stderr.write('e\\n')"}, 0},
			{[]string{"-c", "import sys\ngetattr(sys.stdout, 'buffer', sys.stdout).write(b'raw\\n')\nprint(sys.stdout.encoding, sys.stdin.read())"}, 0},
			{[]string{"-c", "def f():\n    raise ValueError('boom')\nf()"}, 1},
			{[]string{"-c", "def (:"}, 1},
			{[]string{"-c", "import sys; sys.exit(0)"}, 0},
			{[]string{"-c", "raise SystemExit('bye')"}, 1},
			{[]string{script}, 1},
		}
		for _, e := range execs {
			r := run(t, nil, append([]string{"exec", pid}, e.args...)...)
			want(t, r, e.code)
		}
		r := run(t, []byte("x = 6 * 7\nprint(x)\ndef g(): return x\nprint(g())\nclass_ = type\n1/0\n"), "shell", pid)
		want(t, r, 1)
		if r.Stdout != "42\n42\n" {
			t.Fatalf("shell: %s", r)
		}
		r = run(t, []byte("print(__name__)\n"), "shell", pid, "--namespace", "main")
		want(t, r, 0)
		if r.Stdout != "__main__\n" {
			t.Fatalf("shell in __main__: %s", r)
		}

		// A shell open while execs come and go: the routers are shared.
		sh := startScript(t, pid)
		sh.Send("who = 'shell'\nprint(who)\n")
		sh.Expect("shell\n", 30*time.Second)
		for i := 0; i < 3; i++ {
			r := run(t, nil, "exec", pid, "-c", fmt.Sprintf("print(%d)", i))
			want(t, r, 0)
			if r.Stdout != fmt.Sprintf("%d\n", i) {
				t.Fatalf("exec beside a shell: %s", r)
			}
			sh.Send(fmt.Sprintf("print('%%s %%d' %% (who, %d))\n", i))
			sh.Expect(fmt.Sprintf("shell %d\n", i), 10*time.Second)
		}
		sh.in.Close()
		if c := sh.Wait(10 * time.Second); c != 0 {
			t.Fatalf("shell exit %d: %q", c, sh.Output())
		}

		// The last agent thread lets go of the routers once no thread of
		// the target has used them for 0.2 s.
		time.Sleep(time.Second)
		r = run(t, nil, "exec", pid, "-c", garbageCheck)
		if r.Code != 0 {
			t.Fatalf("the check failed: %s", r)
		}
		line := strings.TrimSpace(r.Stdout)
		if !strings.HasPrefix(line, "GARBAGE total=0 agent=0") {
			t.Fatalf("left in the target after %d execs and 3 shells: %s", len(execs)+4, line)
		}
		t.Logf("%d execs and 3 shells: %s", len(execs)+4, line)

		if in.Major >= 3 {
			var g leak.GarbageReport
			r = decode(t, &g, "garbage", "--saveall", pid, "--json")
			for _, row := range g.Types {
				if strings.HasPrefix(row.Type, "__pyglass") || strings.HasPrefix(row.Type, "codecs.Stream") {
					t.Fatalf("the leak report shows pyglass's own objects: %s", r)
				}
			}
			if g.Total != 0 {
				t.Fatalf("the leak report found %d objects: %s", g.Total, r)
			}
		}
		healthy(t, tg)
		noTraces(t, tg)
	})
}
