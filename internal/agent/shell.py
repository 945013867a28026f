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


def _op_shell(sess, params):
    ns = _namespace(params)
    sess['ns'] = ns
    comp = _new_compiler()
    buf = []
    try:
        while True:
            _send(sess, T_PROMPT, b'... ' if buf else b'>>> ')
            if sess['broken']:
                raise _Gone()
            t, payload = _recv(sess)
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
