# Ground truth for the line-table decoders: for every code object of some
# sources, print the raw line table and the interpreter's own answer
# (PyCode_Addr2Line, through ctypes) for every bytecode offset.
# Runs on Python 2.7 and 3.6+. Output: one JSON document on stdout.
import ctypes
import json
import sys
import types

addr2line = ctypes.pythonapi.PyCode_Addr2Line
addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
addr2line.restype = ctypes.c_int

SAMPLE = '''
import os

def simple(a, b):
    c = a + b
    return c

def loops(n):
    total = 0
    for i in range(n):
        if i % 2:
            total += i
        else:
            total -= 1
    while total > 0:
        total //= 2
    return total

def gaps():
    x = 1
''' + '\n' * 300 + '''
    y = 2
''' + '\n' * 70000 + '''
    return x + y

def longline():
    return [''' + ', '.join('f%d(%d)' % (i % 7, i) for i in range(400)) + ''']

def excepts():
    try:
        1 / 0
    except ZeroDivisionError as e:
        pass
    finally:
        x = (
            1 +
            2
        )
    with open(os.devnull) as f:
        f.read()
    return [y * 2 for y in range(3) if y]

class Klass(object):
    attr = 1
    def method(self):
        return lambda q: (q,
                          q)
'''


def walk(code, out, depth=0):
    if depth > 50:
        return
    if sys.version_info >= (3, 10):
        table = code.co_linetable
    else:
        table = code.co_lnotab
    step = 1 if sys.version_info[0] == 2 else 2
    n = len(code.co_code)
    out.append({
        'name': code.co_name,
        'first': code.co_firstlineno,
        'table': bytearray(table).hex() if hasattr(bytearray, 'hex') else str(table).encode('hex'),
        'codelen': n,
        'step': step,
        'lines': [addr2line(code, a) for a in range(0, n, step)],
    })
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            walk(c, out, depth + 1)


def main():
    out = []
    walk(compile(SAMPLE, '<sample>', 'exec'), out)
    import inspect, tokenize, os, threading
    for mod in (inspect, tokenize, os, threading):
        path = mod.__file__
        if path.endswith('.pyc'):
            path = path[:-1]
        with open(path, 'rb') as f:
            src = f.read()
        walk(compile(src, path, 'exec'), out)
    json.dump({'version': list(sys.version_info[:2]), 'codes': out}, sys.stdout)


main()
