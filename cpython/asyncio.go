package cpython

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// MaxAsyncTasks bounds the tasks AsyncTasks reads from one interpreter.
const MaxAsyncTasks = 1 << 17

// maxCoroChain bounds the coroutines followed from a task's coroutine
// through what each one awaits.
const maxCoroChain = 256

// maxGatherChildren bounds the children read from one gather future.
const maxGatherChildren = 1 << 16

// ErrNoAsyncio is returned by AsyncTasks when the interpreter has not
// imported asyncio (so it has no task).
var ErrNoAsyncio = errors.New("asyncio is not imported")

// ErrAsyncioVersion is returned by AsyncTasks for a version whose task
// objects pyglass cannot read.
var ErrAsyncioVersion = errors.New("asyncio tasks of this Python version are not supported")

// Task states (fut_state).
const (
	TaskPending   = "pending"
	TaskCancelled = "cancelled"
	TaskDone      = "done"
)

// AsyncTask is one asyncio task read from memory.
type AsyncTask struct {
	// Addr is the task object's address (id(task) in the target).
	Addr uint64
	// Name is the task's name (3.8+; "Task-N" unless set).
	Name string
	// State is TaskPending, TaskCancelled or TaskDone.
	State string
	// Loop is the address of the task's event loop.
	Loop uint64
	// Running is true for the task its loop is running now.
	Running bool
	// Thread is the thread state of the thread running the task's loop
	// (0 when no thread runs it).
	Thread uint64
	// Stack is the chain of coroutines from the task's own coroutine
	// (first) to the innermost one, each at the line it is suspended on.
	Stack []Frame
	// Awaits is what the task waits for.
	Awaits Awaited
	// AwaitedBy lists the tasks waiting for this one, by address, sorted.
	AwaitedBy []uint64
	// Exception is the type name of the exception a done task ended
	// with, "" otherwise.
	Exception string
	// Err says why part of the task could not be read ("" when all was).
	Err string
}

// Awaited is what a task waits for.
type Awaited struct {
	// Kind is "task", "gather", "taskgroup", "sleep", "lock", "event",
	// "condition", "semaphore", "queue", "socket", "wait_for", "future"
	// (another future), "" when the task waits for nothing (scheduled to
	// run, running, or done).
	Kind string
	// Object is the address of the future the task waits on
	// (task_fut_waiter), 0 if none.
	Object uint64
	// Type is that object's type name.
	Type string
	// Tasks are the tasks it waits for (one for "task", the children of
	// a gather or a task group).
	Tasks []uint64
	// Deadline is, for "sleep" when HasDeadline, the time of the loop's
	// clock (time.monotonic() for asyncio's loops) at which the sleep
	// ends: its TimerHandle's _when.
	Deadline    float64
	HasDeadline bool
}

// AsyncOptions gives AsyncTasks what it cannot find in the interpreter.
type AsyncOptions struct {
	// Debug is the _asyncio module's .AsyncioDebug section (3.14+,
	// where the tasks are in per-thread lists it locates). Required there.
	Debug *AsyncioDebug
	// Threads are the addresses of interp's thread states: their running
	// loops (which thread runs each task), and on 3.14+ their task lists
	// and running tasks.
	Threads []uint64
}

// asyncState is what AsyncTasks finds once per interpreter.
type asyncState struct {
	d       *decoder
	al      asyncioLayout
	cTask   uint64            // _asyncio.Task
	pyTask  uint64            // asyncio.tasks._PyTask
	current map[uint64]uint64 // loop → its running task
	thread  map[uint64]uint64 // loop → the thread state running it (3.14+)
	dbg     *AsyncioDebug     // 3.14+
	// whenSlot caches the offset of _when in each TimerHandle class.
	whenSlot map[uint64]uint64
	chain    []Frame // coroChain's scratch
	frames   []Frame // the chains' frames, handed out by keepFrames
}

// keepFrames returns a copy of f from a slab shared by the walk's chains
// (one allocation per 512 frames, not one per task).
func (s *asyncState) keepFrames(f []Frame) []Frame {
	if len(f) == 0 {
		return nil
	}
	if cap(s.frames)-len(s.frames) < len(f) {
		s.frames = make([]Frame, 0, max(512, len(f)))
	}
	n := len(s.frames)
	s.frames = append(s.frames, f...)
	return s.frames[n : n+len(f) : n+len(f)]
}

// AsyncTasks reads every asyncio task of interp from its registries
// (asyncio.tasks._all_tasks up to 3.11, _scheduled_tasks and
// _eager_tasks on 3.12 and 3.13; 3.14+: the lists of the interpreter and
// of each thread, and _scheduled_tasks for tasks of other classes), with
// each task's coroutine chain, what it awaits and who awaits it. Nothing
// runs in the target. Tasks come sorted by address; a task that cannot
// be read entirely has Err set.
func AsyncTasks(r memory.Reader, l *layout.Layout, interp uint64, opt AsyncOptions) ([]AsyncTask, error) {
	al, ok := asyncioLayouts[l.Minor]
	if l.Major != 3 || !ok {
		return nil, fmt.Errorf("Python %d.%d: %w", l.Major, l.Minor, ErrAsyncioVersion)
	}
	if opt.Debug != nil {
		al = opt.Debug.apply(al)
	}
	s := &asyncState{d: newDecoder(r, l), al: al, current: map[uint64]uint64{}, thread: map[uint64]uint64{}, dbg: opt.Debug, whenSlot: map[uint64]uint64{}}
	modules, err := memory.NonNullPtr(r, interp+uint64(l.InterpModules))
	if err != nil {
		return nil, fmt.Errorf("reading sys.modules: %w", err)
	}
	tasksMod, err := s.moduleDict(modules, "asyncio.tasks")
	if errors.Is(err, ErrKeyNotFound) {
		return nil, ErrNoAsyncio
	}
	if err != nil {
		return nil, err
	}
	if c, err := s.moduleDict(modules, "_asyncio"); err == nil {
		s.cTask, _ = s.d.dictGet(c, "Task")
	}
	s.pyTask, _ = s.d.dictGet(tasksMod, "_PyTask")
	if s.cTask == 0 && s.pyTask == 0 {
		return nil, fmt.Errorf("finding the Task classes: %w", ErrKeyNotFound)
	}
	var addrs []uint64
	switch {
	case l.Minor <= 13:
		addrs, err = s.registered(tasksMod)
	case opt.Debug != nil:
		addrs, err = s.linked(interp, opt)
	}
	if err != nil {
		return nil, err
	}
	if l.Minor <= 13 {
		s.runningLoops(opt.Threads)
	}
	if l.Minor >= 14 {
		// Tasks of other classes (pure-Python ones, without the C
		// module) stay in the registries of asyncio.tasks.
		if more, err := s.registered(tasksMod); err == nil {
			addrs = mergeAddrs(addrs, more)
		}
	}
	// The running task of each loop: _current_tasks (up to 3.13, and
	// pure-Python tasks after), unless a thread state said (3.14+).
	if cur, err := s.d.dictGet(tasksMod, "_current_tasks"); err == nil {
		items, _ := s.d.dictItems(cur, 4096)
		for _, it := range items {
			if _, known := s.current[it.Key]; !known {
				s.current[it.Key] = it.Value
			}
		}
	}
	tasks := make([]AsyncTask, 0, len(addrs))

	index := make(map[uint64]int, len(addrs))
	for _, a := range addrs {
		t, ok := s.task(a)
		if !ok {
			continue
		}
		index[a] = len(tasks)
		tasks = append(tasks, t)
	}
	if l.Minor >= 14 {
		s.awaitedByEdges(tasks, index)
	}
	for _, t := range tasks {
		for _, w := range t.Awaits.Tasks {
			if i, ok := index[w]; ok {
				tasks[i].AwaitedBy = append(tasks[i].AwaitedBy, t.Addr)
			}
		}
	}
	for i := range tasks {
		sortAddrs(tasks[i].AwaitedBy)
	}
	return tasks, nil
}

// mergeAddrs returns the union of two address lists, sorted.
func mergeAddrs(a, b []uint64) []uint64 {
	return sortedSet(append(append(make([]uint64, 0, len(a)+len(b)), a...), b...))
}

func sortAddrs(a []uint64) { slices.Sort(a) }

// sortedSet sorts a and drops its duplicates, in place (a thousand
// addresses: cheaper than a map, which grows and rehashes).
func sortedSet(a []uint64) []uint64 {
	slices.Sort(a)
	return slices.Compact(a)
}

// moduleDict returns the __dict__ of sys.modules[name].
func (s *asyncState) moduleDict(modules uint64, name string) (uint64, error) {
	mod, err := s.d.dictGet(modules, name)
	if err != nil {
		return 0, err
	}
	md, err := memory.NonNullPtr(s.d.r, mod+uint64(s.d.l.ModuleMdDict))
	if err != nil {
		return 0, fmt.Errorf("reading %s.__dict__: %w", name, err)
	}
	return md, nil
}

// registered returns the addresses of the objects in the task
// registries, sorted and without duplicates.
func (s *asyncState) registered(tasksMod uint64) ([]uint64, error) {
	var seen []uint64
	weak := []string{"_all_tasks"}
	if s.d.l.Minor >= 12 {
		weak = []string{"_scheduled_tasks"}
	}
	for _, name := range weak {
		ws, err := s.d.dictGet(tasksMod, name)
		if err != nil {
			return nil, fmt.Errorf("looking up asyncio.tasks.%s: %w", name, err)
		}
		data, err := AttrGet(s.d.r, s.d.l, ws, "data")
		if err != nil {
			return nil, fmt.Errorf("reading asyncio.tasks.%s.data: %w", name, err)
		}
		refs, err := s.setKeys(data)
		if err != nil {
			return nil, fmt.Errorf("reading asyncio.tasks.%s: %w", name, err)
		}
		for _, ref := range refs {
			// PyWeakReference: PyObject_HEAD, wr_object.
			if obj, err := memory.NonNullPtr(s.d.r, ref+uint64(s.d.l.SizeofPyObject)); err == nil {
				seen = append(seen, obj)
			}
		}
	}
	if s.d.l.Minor >= 12 {
		if eager, err := s.d.dictGet(tasksMod, "_eager_tasks"); err == nil {
			keys, err := s.setKeys(eager)
			if err != nil {
				return nil, fmt.Errorf("reading asyncio.tasks._eager_tasks: %w", err)
			}
			seen = append(seen, keys...)
		}
	}
	return sortedSet(seen), nil
}

// runningLoops maps each thread's running loop to its thread state
// (3.7–3.13: the thread state's dict, or asyncio_running_loop on 3.13).
func (s *asyncState) runningLoops(threads []uint64) {
	al, r := s.al, s.d.r
	for _, ts := range threads {
		var loop uint64
		switch {
		case al.TstateRunningLoop >= 0:
			loop, _ = memory.Ptr(r, ts+uint64(al.TstateRunningLoop))
		case al.TstateDict >= 0:
			dict, err := memory.Ptr(r, ts+uint64(al.TstateDict))
			if err != nil || dict == 0 {
				continue
			}
			v, err := s.d.dictGet(dict, "__asyncio_running_event_loop__")
			if err != nil {
				continue
			}
			loop = v
			if s.d.l.Minor <= 11 { // a _RunningLoopHolder
				loop, _ = memory.Ptr(r, v+uint64(s.d.l.SizeofPyObject))
			}
		}
		if loop != 0 {
			s.thread[loop] = ts
		}
	}
}

// maxListNodes bounds the nodes walked in one task list.
const maxListNodes = MaxAsyncTasks

// linked returns the tasks in the lists of interp and of its threads
// (3.14+: struct llist_node, the task's task_node linked into
// asyncio_tasks_head), and the running task and loop of each thread.
func (s *asyncState) linked(interp uint64, opt AsyncOptions) ([]uint64, error) {
	dbg := opt.Debug
	seen := map[uint64]bool{}
	heads := []uint64{interp + dbg.InterpTasksHead}
	for _, ts := range opt.Threads {
		heads = append(heads, ts+dbg.ThreadTasksHead)
		loop, err1 := memory.Ptr(s.d.r, ts+dbg.ThreadRunningLoop)
		task, err2 := memory.Ptr(s.d.r, ts+dbg.ThreadRunningTask)
		if err1 == nil && err2 == nil && loop != 0 {
			s.thread[loop] = ts
			if task != 0 {
				s.current[loop] = task
			}
		}
	}
	total := 0
	for _, head := range heads {
		node, err := memory.Ptr(s.d.r, head)
		if err != nil {
			return nil, fmt.Errorf("reading a task list: %w", err)
		}
		for n := 0; node != head && node != 0; n++ {
			if n >= maxListNodes || total >= MaxAsyncTasks {
				return nil, fmt.Errorf("task list at %#x: more than %d tasks: %w", head, MaxAsyncTasks, memory.ErrTooLarge)
			}
			if node < dbg.TaskNode {
				return nil, fmt.Errorf("task list at %#x: node %#x: %w", head, node, memory.ErrNull)
			}
			task := node - dbg.TaskNode
			if seen[task] {
				break
			}
			seen[task] = true
			total++
			if node, err = memory.Ptr(s.d.r, node); err != nil {
				return nil, fmt.Errorf("walking a task list: %w", err)
			}
		}
	}
	out := make([]uint64, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sortAddrs(out)
	return out, nil
}

// awaitedByEdges adds, on 3.14+, the edges asyncio records itself in
// each task's fut_awaited_by (a future, or a set of them when
// fut_awaited_by_is_set): the parent tasks of gather, TaskGroup and
// plain awaits. A parent task awaits the child.
func (s *asyncState) awaitedByEdges(tasks []AsyncTask, index map[uint64]int) {
	for i := range tasks {
		child := tasks[i].Addr
		if tasks[i].State != TaskPending {
			continue
		}
		for _, p := range s.parents(child) {
			j, ok := index[p]
			if !ok || contains(tasks[j].Awaits.Tasks, child) {
				continue
			}
			tasks[j].Awaits.Tasks = append(tasks[j].Awaits.Tasks, child)
			if tasks[j].Awaits.Kind == "" || tasks[j].Awaits.Kind == "future" {
				tasks[j].Awaits.Kind = "task"
			}
		}
	}
}

// parents returns the futures a 3.14+ task's fut_awaited_by holds (a
// pure-Python task: its __asyncio_awaited_by set).
func (s *asyncState) parents(task uint64) []uint64 {
	if s.pyTask != 0 && s.d.instanceOf(task, s.pyTask) {
		set, err := AttrGet(s.d.r, s.d.l, task, "_Future__asyncio_awaited_by") // self.__asyncio_awaited_by
		if err != nil {
			return nil
		}
		keys, _ := s.setKeys(set)
		return keys
	}
	if s.dbg == nil {
		return nil
	}
	by, err := memory.Ptr(s.d.r, task+s.dbg.TaskAwaitedBy)
	if err != nil || by == 0 {
		return nil
	}
	isSet, err := memory.U8(s.d.r, task+s.dbg.TaskAwaitedByIsSet)
	if err != nil {
		return nil
	}
	if isSet == 0 {
		return []uint64{by}
	}
	keys, _ := s.setKeys(by)
	return keys
}

// setKeys returns the keys of a set object (dummy entries of deleted keys
// included: the caller checks what each key is).
func (s *asyncState) setKeys(set uint64) ([]uint64, error) {
	t, err := s.d.typeOf(set)
	if err != nil {
		return nil, err
	}
	if t.name != "set" {
		return nil, fmt.Errorf("%#x is a %q, not a set: %w", set, t.name, ErrWrongType)
	}
	// PySetObject: PyObject_HEAD, fill, used, mask, table (Include/cpython/setobject.h).
	base := uint64(s.d.l.SizeofPyObject)
	mask, err := memory.I64(s.d.r, set+base+16)
	if err != nil {
		return nil, err
	}
	table, err := memory.NonNullPtr(s.d.r, set+base+24)
	if err != nil {
		return nil, err
	}
	if mask < 0 || mask >= MaxAsyncTasks*8 {
		return nil, fmt.Errorf("set of %d slots: %w", mask+1, memory.ErrTooLarge)
	}
	entries, err := s.d.ptrArray(table, int(mask+1)*2)
	if err != nil {
		return nil, err
	}
	var keys []uint64
	for i := 0; i < len(entries); i += 2 {
		if k := entries[i]; k != 0 {
			keys = append(keys, k)
			if len(keys) > MaxAsyncTasks {
				return nil, fmt.Errorf("more than %d tasks: %w", MaxAsyncTasks, memory.ErrTooLarge)
			}
		}
	}
	return keys, nil
}

// task reads the task at a; ok is false when a is not a task.
func (s *asyncState) task(a uint64) (t AsyncTask, ok bool) {
	d, al := s.d, s.al
	isC := s.cTask != 0 && d.instanceOf(a, s.cTask)
	if !isC {
		if s.pyTask != 0 && d.instanceOf(a, s.pyTask) {
			return s.pyTaskObj(a), true
		}
		return t, false
	}
	end := max(al.TaskName, al.TaskCoro) + 8
	b, err := d.scratchBytes(a, end)
	if err != nil {
		return AsyncTask{Addr: a, Err: err.Error()}, true
	}
	f := fields{b: b, what: "asyncio task"}
	loop, state := f.u64(al.FutLoop), f.i32(al.FutState)
	waiter, coro, exc := f.u64(al.TaskFutWaiter), f.u64(al.TaskCoro), f.u64(al.FutException)
	var name uint64
	if al.TaskName >= 0 {
		name = f.u64(al.TaskName)
	}
	if f.err != nil {
		return AsyncTask{Addr: a, Err: f.err.Error()}, true
	}
	t = s.fill(a, loop, int(state), waiter, coro, exc, name)
	return t, true
}

// pyTaskObj reads a pure-Python asyncio.Task through its instance dict.
func (s *asyncState) pyTaskObj(a uint64) AsyncTask {
	attr := func(n string) uint64 {
		v, _ := AttrGet(s.d.r, s.d.l, a, n)
		return v
	}
	state := 0
	if st, err := s.d.str(attr("_state"), 16); err == nil {
		switch st {
		case "CANCELLED":
			state = 1
		case "FINISHED":
			state = 2
		}
	}
	return s.fill(a, attr("_loop"), state, attr("_fut_waiter"), attr("_coro"), attr("_exception"), attr("_name"))
}

// fill decodes what a task's members point to.
func (s *asyncState) fill(a, loop uint64, state int, waiter, coro, exc, name uint64) AsyncTask {
	d := s.d
	t := AsyncTask{Addr: a, Loop: loop, State: TaskPending}
	switch state {
	case 1:
		t.State = TaskCancelled
	case 2:
		t.State = TaskDone
	}
	t.Running = loop != 0 && s.current[loop] == a
	t.Thread = s.thread[loop]
	// 3.12+ keep a task's number (an int) until its name is asked for.
	if nt, err := d.typeOf(name); err == nil && nt.flags&tpflagsUnicodeSubclass != 0 {
		if n, _, err := d.strTrunc(name, MaxNameLen); err == nil {
			t.Name = n
		}
	}
	if exc != 0 && t.State == TaskDone {
		if et, err := d.typeOf(exc); err == nil {
			t.Exception = et.name
		}
	}
	var errs []string
	if t.State == TaskPending && coro != 0 {
		stack, err := s.coroChain(coro)
		t.Stack = stack
		if err != nil {
			errs = append(errs, "reading its coroutines: "+err.Error())
		}
	}
	if waiter != 0 && t.State == TaskPending {
		aw, err := s.awaited(waiter)
		if err != nil {
			errs = append(errs, "reading what it awaits: "+err.Error())
		}
		t.Awaits = aw
	}
	if t.Awaits.Kind == "" || t.Awaits.Kind == "future" {
		if k := kindFromStack(t.Stack); k != "" {
			t.Awaits.Kind = k
		}
	}
	if t.Awaits.Kind == "" && waiter != 0 {
		t.Awaits.Kind = "future"
	}
	if t.Awaits.Kind == "sleep" {
		when, err := s.sleepDeadline(t.Stack)
		if err != nil {
			errs = append(errs, "reading its sleep's deadline: "+err.Error())
		}
		t.Awaits.Deadline, t.Awaits.HasDeadline = when, err == nil
	}
	if t.Awaits.Kind == "taskgroup" && len(t.Stack) > 0 && s.d.l.Minor >= 11 && s.d.l.Minor <= 13 {
		// 3.11–3.13 record no edge from a TaskGroup's task to its
		// children: they are the group's _tasks, the group the `self`
		// of the innermost coroutine (TaskGroup.__aexit__).
		inner, _ := innermostAsync(t.Stack)
		children, err := s.groupTasks(inner)
		if err != nil {
			errs = append(errs, "reading its TaskGroup: "+err.Error())
		}
		t.Awaits.Tasks = children
	}
	t.Err = strings.Join(errs, "; ")
	return t
}

// groupTasks returns the tasks of the TaskGroup whose method runs in the
// suspended frame f: its first local, self, holds them in _tasks.
func (s *asyncState) groupTasks(f Frame) ([]uint64, error) {
	if !strings.HasPrefix(f.Function, "TaskGroup.") {
		return nil, nil
	}
	self, err := memory.NonNullPtr(s.d.r, f.Addr+uint64(s.d.l.InterpFrameLocalsplus))
	if err != nil {
		return nil, err
	}
	set, err := AttrGet(s.d.r, s.d.l, self, "_tasks")
	if err != nil {
		return nil, err
	}
	keys, err := s.setKeys(set)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, k := range keys {
		if s.isTask(k) {
			out = append(out, k)
		}
	}
	sortAddrs(out)
	return out, nil
}

// awaited describes the future a task waits on.
func (s *asyncState) awaited(waiter uint64) (Awaited, error) {
	d := s.d
	aw := Awaited{Object: waiter, Kind: "future"}
	wt, err := d.typeOf(waiter)
	if err != nil {
		return aw, err
	}
	aw.Type = wt.name
	switch {
	case s.isTask(waiter):
		aw.Kind, aw.Tasks = "task", []uint64{waiter}
	case wt.name == "_GatheringFuture":
		aw.Kind = "gather"
		children, err := AttrGet(d.r, d.l, waiter, "_children")
		if err != nil {
			return aw, fmt.Errorf("reading the children of a gather: %w", err)
		}
		items, err := d.listItems(children, maxGatherChildren)
		if err != nil {
			return aw, fmt.Errorf("reading the children of a gather: %w", err)
		}
		for _, c := range items {
			if s.isTask(c) {
				aw.Tasks = append(aw.Tasks, c)
			}
		}
	}
	return aw, nil
}

func (s *asyncState) isTask(obj uint64) bool {
	return s.cTask != 0 && s.d.instanceOf(obj, s.cTask) || s.pyTask != 0 && s.d.instanceOf(obj, s.pyTask)
}

// listItems returns the items of a list, at most max of them.
func (d *decoder) listItems(list uint64, max int) ([]uint64, error) {
	t, err := d.typeOf(list)
	if err != nil {
		return nil, err
	}
	if t.flags&tpflagsListSubclass == 0 {
		return nil, fmt.Errorf("%#x is a %q, not a list: %w", list, t.name, ErrWrongType)
	}
	n, err := memory.I64(d.r, list+uint64(d.l.VarObjectObSize))
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(max) {
		return nil, fmt.Errorf("list of %d items (limit %d): %w", n, max, memory.ErrTooLarge)
	}
	if n == 0 {
		return nil, nil
	}
	items, err := memory.NonNullPtr(d.r, list+uint64(d.l.ListObItem))
	if err != nil {
		return nil, err
	}
	return d.ptrArray(items, int(n))
}

// kindFromStack names what the innermost coroutine of a task waits for
// when it is one of asyncio's own primitives.
func kindFromStack(stack []Frame) string {
	f, ok := innermostAsync(stack)
	if !ok {
		return ""
	}
	if !strings.Contains(f.File, "asyncio") {
		return ""
	}
	fn := f.Function
	if i := strings.LastIndexByte(fn, '.'); i >= 0 {
		fn = fn[i+1:]
	}
	file := f.File[strings.LastIndexByte(f.File, '/')+1:]
	switch {
	case f.Function == "sleep":
		return "sleep"
	case f.Function == "wait_for":
		return "wait_for"
	case file == "taskgroups.py":
		return "taskgroup"
	case file == "queues.py":
		return "queue"
	case file == "streams.py":
		return "socket" // StreamReader/StreamWriter (3.10 and older name no class)
	case file == "locks.py" && fn == "acquire" && !strings.Contains(f.Function, "Semaphore."):
		return "lock"
	case file == "locks.py" && f.Function == "wait":
		return "event" // 3.10 and older name no class: Event.wait or Condition.wait
	case strings.HasPrefix(f.Function, "TaskGroup."):
		return "taskgroup"
	case strings.Contains(f.Function, "Semaphore."):
		return "semaphore"
	case strings.Contains(f.Function, "Lock.") && fn == "acquire":
		return "lock"
	case strings.HasPrefix(f.Function, "Event."):
		return "event"
	case strings.HasPrefix(f.Function, "Condition."):
		return "condition"
	case strings.Contains(f.Function, "Queue."):
		return "queue"
	case strings.HasPrefix(fn, "sock_") || strings.HasPrefix(f.Function, "StreamReader.") || f.Function == "StreamWriter.drain" || strings.HasSuffix(f.Function, "_drain_helper"):
		return "socket"
	}
	return ""
}

// innermostAsync returns the innermost frame of a task's stack that is
// not a future's own __await__ (the generator a pure-Python Future
// awaits through).
func innermostAsync(stack []Frame) (Frame, bool) {
	for i := len(stack) - 1; i >= 0; i-- {
		f := stack[i]
		if strings.HasSuffix(f.File, "futures.py") && strings.HasSuffix(f.Function, "__await__") {
			continue
		}
		return f, true
	}
	return Frame{}, false
}

// coroChain follows a task's coroutine through what each coroutine
// awaits, returning one frame per coroutine, outermost first.
func (s *asyncState) coroChain(coro uint64) ([]Frame, error) {
	out, err := s.chainInto(s.chain[:0], coro)
	s.chain = out
	return s.keepFrames(out), err
}

// chainInto appends coroChain's frames to out.
func (s *asyncState) chainInto(out []Frame, coro uint64) ([]Frame, error) {
	var seenBuf [8]uint64 // a chain is a few coroutines long
	seen := seenBuf[:0]
	for n := 0; coro != 0; n++ {
		if n >= maxCoroChain || slices.Contains(seen, coro) {
			return out, fmt.Errorf("coroutine chain at %#x: %w", coro, ErrFrameCycle)
		}
		seen = append(seen, coro)
		t, err := s.d.typeOf(coro)
		if err != nil {
			return out, err
		}
		if t.name != "coroutine" && t.name != "generator" {
			return out, nil
		}
		f, next, err := s.coroFrame(coro, t.name == "coroutine")
		if err != nil {
			return out, err
		}
		if f.Code != 0 {
			out = append(out, f)
		}
		coro = next
	}
	return out, nil
}

// coroFrame decodes the frame of a coroutine or generator and returns
// the object it awaits (its value stack's top while suspended in an
// await; only followed from coroutines, whose only suspension points are
// awaits).
func (s *asyncState) coroFrame(coro uint64, follow bool) (f Frame, next uint64, err error) {
	d, al, l := s.d, s.al, s.d.l
	if l.Minor <= 10 {
		fr, err := memory.Ptr(d.r, coro+uint64(al.GenFrame))
		if err != nil || fr == 0 {
			return f, 0, err // finished: no frame
		}
		f, _, _, err = d.frameObject(fr, FrameOptions{})
		if err != nil || !follow {
			return f, 0, err
		}
		var top uint64
		if l.Minor <= 9 {
			sp, err := memory.Ptr(d.r, fr+uint64(al.FrameStacktop))
			if err != nil || sp == 0 {
				return f, 0, err // running
			}
			top = sp - 8
		} else {
			depth, err := memory.I32(d.r, fr+uint64(al.FrameStackdepth))
			if err != nil || depth <= 0 || depth > 1<<16 {
				return f, 0, err
			}
			vs, err := memory.NonNullPtr(d.r, fr+uint64(al.FrameValuestack))
			if err != nil {
				return f, 0, err
			}
			top = vs + 8*uint64(depth-1)
		}
		next, err = memory.Ptr(d.r, top)
		return f, next, err
	}
	st, err := memory.U8(d.r, coro+uint64(al.GenFrameState))
	if err != nil {
		return f, 0, err
	}
	state := int8(st)
	if int(state) >= al.StateDone {
		return f, 0, nil
	}
	iframe := coro + uint64(al.GenIframe)
	f, _, _, err = d.interpFrame(iframe, FrameOptions{})
	if err != nil || !follow {
		return f, 0, err
	}
	if int(state) != al.StateYieldFrom {
		return f, 0, nil
	}
	if l.Minor >= 14 {
		// stackpointer: one past the top _PyStackRef (tag bits low).
		sp, err := memory.Ptr(d.r, iframe+uint64(l.InterpFrameStackpointer))
		slot := uint64(al.YieldFromSlot) * 8
		if err != nil || sp < iframe+uint64(l.InterpFrameLocalsplus)+slot || sp-iframe > 1<<20 {
			return f, 0, err
		}
		next, err = memory.Ptr(d.r, sp-slot)
		return f, next &^ 7, err
	}
	sp, err := memory.I32(d.r, iframe+uint64(l.InterpFrameStacktop))
	if err != nil || sp <= 0 || sp > 1<<16 {
		return f, 0, err
	}
	next, err = memory.Ptr(d.r, iframe+uint64(l.InterpFrameLocalsplus)+8*uint64(sp-1))
	return f, next, err
}

// AsyncCycles returns the cycles of the await graph of tasks (task A
// awaits B awaits A), each listed from its lowest address in await
// order; cycles are sorted by their first member.
func AsyncCycles(tasks []AsyncTask) [][]uint64 {
	at := make(map[uint64]int32, len(tasks)) // a task's index in tasks
	for i, t := range tasks {
		at[t.Addr] = int32(i)
	}
	awaits := func(v uint64) []uint64 { return tasks[at[v]].Awaits.Tasks }
	// Tarjan's strongly connected components, over the indices.
	const unseen = -1
	index, low := make([]int32, len(tasks)), make([]int32, len(tasks))
	for i := range index {
		index[i] = unseen
	}
	onStack := make([]bool, len(tasks))
	var stack []int32
	var out [][]uint64
	next := int32(0)
	var visit func(v int32)
	visit = func(v int32) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, a := range tasks[v].Awaits.Tasks {
			w, known := at[a]
			if !known {
				continue
			}
			if index[w] == unseen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		var comp []uint64
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			comp = append(comp, tasks[w].Addr)
			if w == v {
				break
			}
		}
		selfLoop := len(comp) == 1 && contains(tasks[v].Awaits.Tasks, tasks[v].Addr)
		if len(comp) > 1 || selfLoop {
			out = append(out, orderCycle(comp, awaits))
		}
	}
	for _, t := range tasks {
		if v := at[t.Addr]; index[v] == unseen {
			visit(v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func contains(a []uint64, v uint64) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// orderCycle lists a strongly connected component from its lowest
// address, each member followed by one it awaits inside the component
// (the members of a simple cycle in await order).
func orderCycle(comp []uint64, awaits func(uint64) []uint64) []uint64 {
	in := map[uint64]bool{}
	for _, c := range comp {
		in[c] = true
	}
	sortAddrs(comp)
	out := []uint64{comp[0]}
	done := map[uint64]bool{comp[0]: true}
	for cur := comp[0]; len(out) < len(comp); {
		moved := false
		for _, w := range awaits(cur) {
			if in[w] && !done[w] {
				out, done[w], cur, moved = append(out, w), true, w, true
				break
			}
		}
		if !moved {
			break
		}
	}
	for _, c := range comp {
		if !done[c] {
			out = append(out, c)
		}
	}
	return out
}
