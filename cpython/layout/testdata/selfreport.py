# Fixture for the layout tests: reports addresses and values the
# interpreter can tell about itself, then sleeps. Runs on 2.7 and 3.x.
import json
import sys
import time

try:
    import threading
    get_ident = threading._get_ident if sys.version_info[0] == 2 else threading.get_ident
except Exception:
    get_ident = None

frame = sys._getframe()
code = frame.f_code
mod = sys.modules[__name__]
d = {"a": 1, "b": 2}
t = (11, 22)
lst = [33]
fl = 1.5
s = "hello"
info = {
    "version": list(sys.version_info[:3]),
    "code": id(code), "code_type": id(type(code)),
    "co_filename": id(code.co_filename), "co_name": id(code.co_name),
    "co_consts": id(code.co_consts), "co_names": id(code.co_names),
    "co_firstlineno": code.co_firstlineno, "co_argcount": code.co_argcount, "co_flags": code.co_flags,
    "frame": id(frame),
    "tuple": id(t), "tuple_type": id(tuple), "tuple0": id(t[0]),
    "list": id(lst), "list0": id(lst[0]),
    "float": id(fl),
    "mod": id(mod), "moddict": id(mod.__dict__),
    "dict": id(d), "dictlen": len(d),
    "str": id(s),
    "basicsize": {
        "object": object.__basicsize__, "float": float.__basicsize__,
        "tuple": tuple.__basicsize__, "code": type(code).__basicsize__,
    },
    "sizeof_digit": (sys.long_info if sys.version_info[0] == 2 else sys.int_info).sizeof_digit,
    "modules": id(sys.modules), "sysdict": id(sys.__dict__),
}
try:
    import __builtin__ as builtins
except ImportError:
    import builtins
info["builtins"] = id(builtins.__dict__)
if get_ident:
    info["ident"] = get_ident()
if hasattr(threading, "get_native_id"):
    info["native_id"] = threading.get_native_id()
try:
    import ctypes
    api = ctypes.pythonapi
    api.PyThreadState_Get.restype = ctypes.c_void_p
    api.PyInterpreterState_Head.restype = ctypes.c_void_p
    info["tstate"] = api.PyThreadState_Get()
    info["interp"] = api.PyInterpreterState_Head()
    try:
        info["runtime"] = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    except ValueError:
        pass
except ImportError:
    pass
print("READY " + json.dumps(info))
sys.stdout.flush()
while True:
    time.sleep(60)
