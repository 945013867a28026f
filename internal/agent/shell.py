# pyglass in-target agent: the shell part, loaded by core.py (_load, in
# agent.py) into the agent's globals only for a shell session, so that exec
# sessions do not pay for compiling it. Same rules and chunk markers as
# core.py.

PyCF_DONT_IMPLY_DEDENT = 0x200
PyCF_ALLOW_INCOMPLETE_INPUT = 0x4000


class _ShellCompiler(object):
    """codeop.CommandCompiler semantics without touching the warnings
    filters (codeop swaps them globally, which other threads would see)."""

    def __init__(self):
        self.future = 0
        try:
            import __future__
            self.features = [getattr(__future__, n).compiler_flag
                             for n in __future__.all_feature_names]
        except BaseException:
            self.features = []
        self.incomplete_cls = getattr(_builtins, '_IncompleteInputError', None)

    def _compile(self, source, filename, extra):
        return compile(source, filename, 'single', self.future | extra, True)

    def __call__(self, source, filename):
        """Returns a code object, None if incomplete; raises SyntaxError etc."""
        for line in source.split('\n'):
            line = line.strip()
            if line and line[0] != '#':
                break
        else:
            source = 'pass'
        if sys.version_info >= (3, 10):
            flags = PyCF_DONT_IMPLY_DEDENT | PyCF_ALLOW_INCOMPLETE_INPUT
            try:
                self._compile(source, filename, flags)
            except SyntaxError:
                try:
                    self._compile(source + '\n', filename, flags)
                    return None
                except SyntaxError as e:
                    if self.incomplete_cls is not None:
                        if isinstance(e, self.incomplete_cls):
                            return None
                    elif 'incomplete input' in str(e):
                        return None
            final = flags if sys.version_info < (3, 11) else 0
            co = self._compile(source, filename, final)
        else:
            co = err1 = err2 = None
            try:
                co = self._compile(source, filename, PyCF_DONT_IMPLY_DEDENT)
            except SyntaxError:
                pass
            if co is None:
                co1 = None
                try:
                    co1 = self._compile(source + '\n', filename, PyCF_DONT_IMPLY_DEDENT)
                except SyntaxError as e:
                    err1 = e
                try:
                    self._compile(source + '\n\n', filename, PyCF_DONT_IMPLY_DEDENT)
                except SyntaxError as e:
                    err2 = e
                if not co1 and repr(err1) == repr(err2):
                    raise err1
                return None
        for f in self.features:
            if co.co_flags & f:
                self.future |= f
        return co


# ---- chunk ----
def _op_shell(sess, params):
    if params.get('namespace', b'fresh') == b'main':
        ns = sys.modules['__main__'].__dict__
    else:
        ns = {'__name__': '__pyglass__', '__builtins__': _builtins}
    sess.ns = ns
    comp = _ShellCompiler()
    buf = []
    try:
        while True:
            sess.send(T_PROMPT, b'... ' if buf else b'>>> ')
            if sess.broken:
                raise _Gone()
            t, payload = sess.recv()
            if t == T_CLOSE:
                return 0
            if t == T_INTERRUPT:
                buf = []
                sess.write(T_STDERR, 'KeyboardInterrupt\n')
                continue
            if t != T_INPUT:
                continue
            line = _to_text(payload)
            if line.endswith('\n'):
                line = line[:-1]
            buf.append(line)
            source = '\n'.join(buf)
            try:
                co = comp(source, '<console>')
            except BaseException:
                buf = []
                et, ev = sys.exc_info()[:2]
                sess.write_exception(et, ev, None)
                continue
            if co is None:
                continue
            buf = []
            status, exited = _run_code(sess, co, ns)
            if exited:
                return status
    finally:
        try:
            sess.release_underscore()
        except BaseException:
            pass
        sess.ns = None
        if ns.get('__name__') == '__pyglass__':
            ns.clear()
