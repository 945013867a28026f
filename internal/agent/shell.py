# pyglass in-target agent: the shell part, loaded by core.py (_load, in
# agent.py) into the agent's globals only for a shell session, so that exec
# sessions do not pay for compiling it. Same rules and chunk markers as
# core.py (no class statements, see its top).

PyCF_DONT_IMPLY_DEDENT = 0x200
PyCF_ALLOW_INCOMPLETE_INPUT = 0x4000


def _new_compiler():
    """State of codeop.CommandCompiler semantics, without touching the
    warnings filters (codeop swaps them globally, which other threads
    would see): the __future__ flags seen so far."""
    st = {'future': 0, 'features': [],
          'incomplete_cls': getattr(_builtins, '_IncompleteInputError', None)}
    try:
        import __future__
        st['features'] = [getattr(__future__, n).compiler_flag
                          for n in __future__.all_feature_names]
    except BaseException:
        pass
    return st


def _compile_single(st, source, filename, extra):
    return compile(source, filename, 'single', st['future'] | extra, True)


def _shell_compile(st, source, filename):
    """Returns a code object, None if incomplete; raises SyntaxError etc."""
    for line in source.split('\n'):
        line = line.strip()
        if line and line[0] != '#':
            break
    else:
        source = 'pass'
    if sys.version_info >= (3, 10):
        co = _compile_310(st, source, filename)
    else:
        co = _compile_old(st, source, filename)
    if co is None:
        return None
    for f in st['features']:
        if co.co_flags & f:
            st['future'] |= f
    return co


def _compile_310(st, source, filename):
    flags = PyCF_DONT_IMPLY_DEDENT | PyCF_ALLOW_INCOMPLETE_INPUT
    try:
        _compile_single(st, source, filename, flags)
    except SyntaxError:
        try:
            _compile_single(st, source + '\n', filename, flags)
            return None
        except SyntaxError as e:
            cls = st['incomplete_cls']
            if cls is not None:
                if isinstance(e, cls):
                    return None
            elif 'incomplete input' in str(e):
                return None
    final = flags if sys.version_info < (3, 11) else 0
    return _compile_single(st, source, filename, final)


# ---- chunk ----
def _compile_old(st, source, filename):
    """Before 3.10: compare the errors with one and two more newlines."""
    try:
        return _compile_single(st, source, filename, PyCF_DONT_IMPLY_DEDENT)
    except SyntaxError:
        pass
    co1 = err1 = err2 = None
    try:
        try:
            co1 = _compile_single(st, source + '\n', filename, PyCF_DONT_IMPLY_DEDENT)
        except SyntaxError as e:
            err1 = e
        try:
            _compile_single(st, source + '\n\n', filename, PyCF_DONT_IMPLY_DEDENT)
        except SyntaxError as e:
            err2 = e
        if not co1 and repr(err1) == repr(err2):
            raise err1
        return None
    finally:
        # err1 and err2 refer to this frame through their tracebacks.
        err1 = err2 = None


# ---- chunk ----
# --- piped input: a script, run statement by statement as it comes ---
PyCF_ONLY_AST = 0x400
COMPOUND = ('If', 'For', 'While', 'Try', 'TryStar', 'TryExcept', 'TryFinally',
            'With', 'AsyncFor', 'AsyncWith', 'FunctionDef', 'AsyncFunctionDef',
            'ClassDef', 'Match')
OPENERS = ('if', 'for', 'while', 'try', 'with', 'def', 'class', 'async',
           'match', '@')
CONTINUATIONS = ('else', 'elif', 'except', 'finally')


def _first_word(line):
    w = line.split(None, 1)[0] if line.strip() else ''
    if w.startswith('@'):
        return '@'
    for c in ':(':
        w = w.split(c, 1)[0]
    return w


def _script_parse(st, lines, first):
    """Compiles lines (the first being line number first of the input) as
    one piece of the script; returns (code or None if there is no
    statement, whether the last statement is compound), or None if it does
    not compile (yet)."""
    src = '\n' * (first - 1) + '\n'.join(lines) + '\n'
    try:
        tree = compile(src, '<stdin>', 'exec', PyCF_ONLY_AST | st['future'], True)
    except Exception:
        return None
    if not tree.body:
        return None, False
    compound = type(tree.body[-1]).__name__ in COMPOUND
    co = compile(tree, '<stdin>', 'exec', st['future'], True)
    for f in st['features']:
        if co.co_flags & f:
            st['future'] |= f
    return co, compound


def _script_line(sess, st, ns, line):
    """Takes one more line of the script. A statement runs as soon as it is
    complete: a simple one at once, a compound one when the next statement
    starts (no blank line needed) or the input ends. Returns the exit
    status when the script ends (an exception, SystemExit), else None."""
    buf = st['buf']
    n = st['lineno'] = st['lineno'] + 1
    word = _first_word(line)
    if buf and word and line[:1] not in ' \t#' and word not in CONTINUATIONS:
        r = _script_parse(st, buf, st['first'])
        if r is not None:
            del buf[:]
            status = _script_run(sess, ns, r[0])
            if status is not None:
                return status
    if not buf:
        if not word or word.startswith('#'):
            return None
        st['first'] = n
    buf.append(line)
    if _first_word(buf[0]) not in OPENERS:
        r = _script_parse(st, buf, st['first'])
        if r is not None and not r[1]:
            del buf[:]
            return _script_run(sess, ns, r[0])
    return None


def _script_run(sess, ns, co):
    if co is None:
        return None
    status, exited = _run_code(sess, co, ns)
    if status or exited:
        return status
    return None


def _script_end(sess, st, ns):
    """The input ended: runs what is pending (or reports why it does not
    compile); returns the exit status."""
    buf = st['buf']
    if not buf:
        return 0
    r = _script_parse(st, buf, st['first'])
    if r is None:
        try:
            compile('\n' * (st['first'] - 1) + '\n'.join(buf) + '\n', '<stdin>', 'exec', st['future'], True)
        except BaseException:
            _report(sess, False)
        return 1
    status = _script_run(sess, ns, r[0])
    return status or 0


def _shell_script(sess, ns):
    """Piped input: runs it as python runs a script piped to it (blocks
    need no blank line, expressions do not echo, the first exception ends
    it with status 1), each statement as soon as it is complete."""
    st = _new_compiler()
    st['buf'] = []
    st['lineno'] = 0
    st['first'] = 1
    if ns.get('__name__') == '__pyglass__':
        ns['__file__'] = '<stdin>'
    while True:
        _send(sess, T_PROMPT, b'>>> ')
        if sess['broken']:
            raise _Gone()
        t, payload = _next_frame(sess)
        if t == T_CLOSE:
            return _script_end(sess, st, ns)
        if t != T_INPUT:
            continue
        line = _to_text(payload)
        if line.endswith('\n'):
            line = line[:-1]
        status = _script_line(sess, st, ns, line)
        if status is not None:
            return status


# ---- chunk ----
def _op_shell(sess, params):
    ns = _namespace(params)
    sess['ns'] = ns
    comp = _new_compiler()
    buf = []
    try:
        if params.get('mode') == b'script':
            return _shell_script(sess, ns)
        while True:
            _send(sess, T_PROMPT, b'... ' if buf else b'>>> ')
            if sess['broken']:
                raise _Gone()
            t, payload = _next_frame(sess)
            if t == T_CLOSE:
                return 0
            if t == T_INTERRUPT:
                buf = []
                _write(sess, T_STDERR, 'KeyboardInterrupt\n')
                continue
            if t != T_INPUT:
                continue
            line = _to_text(payload)
            if line.endswith('\n'):
                line = line[:-1]
            buf.append(line)
            source = '\n'.join(buf)
            co = None
            try:
                co = _shell_compile(comp, source, '<console>')
            except BaseException:
                buf = []
                _report(sess, False)
                continue
            if co is None:
                continue
            buf = []
            status, exited = _run_code(sess, co, ns)
            co = None
            if exited:
                return status
    finally:
        try:
            _release_underscore(sess)
        except BaseException:
            pass
        sess['ns'] = None
        box = [ns]
        ns = None
        _let_go(box)
