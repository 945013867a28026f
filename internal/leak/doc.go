// Package leak builds pyglass's leak-hunting reports: garbage, objects, gc
// and trace.
//
// Each report is a Python source that pyglass's exec runs inside the
// target on a fresh thread, in a fresh namespace (__name__ ==
// '__pyglass__'). The source prints one JSON document on stdout; the Parse
// functions decode it into the typed reports below, the Render functions
// print them for people, and the structs marshal back to JSON with stable
// snake_case field names for --json.
//
// The sources run unchanged on CPython 2.7 and 3.6 to 3.14 and leave
// nothing behind in the target:
//   - they do not import json or tracemalloc (Python modules that may pull
//     in others): JSON is written by a small encoder in the script, and
//     tracemalloc is driven through its C module _tracemalloc. The only
//     imports are the C modules gc, time and _tracemalloc, and any of them
//     that was not in sys.modules before the run is removed from it after;
//   - every name the script defines starts with _pg_ and is deleted from the
//     namespace at the end, so no function/globals cycle survives, and no
//     reference to an inspected object is kept (locals are dropped, caught
//     exceptions are cleared);
//   - gc flags are restored (only garbage --saveall changes them, for one
//     collection); gc thresholds and the enabled state are never touched;
//     tracemalloc changes only through the trace report;
//   - no code of the target's classes is called on purpose: example reprs
//     are builtin reprs of scalars and strings, bounded renderings of
//     builtin containers, and '<module.Type object at 0x...>' for every
//     other object, whatever its __repr__ (a user __repr__ could block,
//     fail or be slow, and pure Python cannot time it out). sys.getsizeof
//     still calls a class's own __sizeof__; a failure counts as size 0.
//     Naming the edges of the example cycle reads an instance's __dict__
//     through the C descriptor, which on 3.11+ materialises the dict of
//     that one garbage object (values unchanged).
//
// A report that fails in the target prints {"error": "..."}; the Parse
// functions return it as a *ScriptError (errors.Is(err, ErrUnsupported)
// for "tracemalloc is not available on Python 2.7").
//
// GIL: the objects census calls gc.get_objects once per generation (3.8+;
// once in all on older versions). That C call holds the GIL while it builds
// its list: measured about 70-130 ms for a 5-million-object heap on this
// project's CI machine, which is the longest stall another thread sees;
// the rest of the work runs in chunks with time.sleep(0) between them.
package leak
