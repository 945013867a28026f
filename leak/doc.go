// Package leak runs pyglass's leak-hunting reports in a live Python
// process: Garbage (what is in gc.garbage, its sizes, cycles and creation
// lines), Objects (a census by class) and ObjectsGrowth (which classes grow),
// GC (the collector's state) and Trace (allocation tracing on or off).
// Each takes a *pyglass.Process from pyglass.Attach:
//
//	p, err := pyglass.Attach(pid)
//	r, err := leak.Objects(ctx, p, leak.ObjectsOptions{Top: 20}, leak.RunOptions{})
//
// Each report is a Python source that pyglass's exec runs inside the
// target on a fresh thread, in a fresh namespace (__name__ ==
// '__pyglass__'). The source prints one JSON document on stdout; the Parse
// functions decode it into the typed reports below, the Render functions
// print them for people, and the structs marshal back to JSON with stable
// snake_case field names for --json.
//
// The sources run unchanged on CPython 2.7 and 3.6 to 3.15 and leave
// nothing behind in the target:
//   - they do not import json or tracemalloc (Python modules that may pull
//     in others): JSON is written by a small encoder in the script, and
//     tracemalloc is driven through its C module _tracemalloc. The only
//     imports are the C modules gc, time, itertools, _collections and
//     _tracemalloc, which stay imported: removed from sys.modules again,
//     each module, its spec and its functions were cyclic garbage that the
//     next garbage --saveall reported as the target's;
//   - sleep and get_ident are the interpreter's own C functions even after
//     gevent or eventlet monkey-patched them (taken from what the patcher
//     saved), so no hub and no file descriptor is created in the target;
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
// GIL: the objects census walks the object graph from the program's roots
// with short gc.get_referents calls (one per container, or per 64 other
// objects) and sleeps briefly every 2 ms, so no GIL hold is longer than a
// few milliseconds whatever the heap's size (see scripts/objects.py for what the walk sees and misses);
// ObjectsOptions.All takes gc.get_objects instead, one call that holds
// the GIL while it lists every tracked object. garbage's SaveAll runs full
// collections, the collector's own pause.
package leak
