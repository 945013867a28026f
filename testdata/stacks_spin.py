# stacks_spin.py: a thread named "spinner" spins in one long C call
# (sum over a range) holding the GIL, for `pyglass stacks` tests (Python 2.7
# and 3.x).
#
# Just before the C call, on the same source line, the spinner prints its
# own stack as "SPIN <json>" (traceback.extract_stack plus co_qualname where
# the version has one, outermost first, without the reporting function),
# then "READY pid=P". The main thread waits for it in join().
import json
import os
import sys
import threading
import traceback

try:
    rng = xrange
except NameError:
    rng = range


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def report():
    frame = sys._getframe(1)
    tb = traceback.extract_stack(frame)
    quals = []
    f = frame
    while f is not None:
        quals.append(getattr(f.f_code, "co_qualname", None))
        f = f.f_back
    quals.reverse()
    frames = [{"file": fn, "line": ln, "name": name, "qualname": q}
              for (fn, ln, name, _), q in zip(tb, quals)]
    t = threading.current_thread()
    out("SPIN " + json.dumps({"name": t.name, "main": False,
                              "native_id": getattr(t, "native_id", None), "frames": frames}))
    out("READY pid=%d" % os.getpid())
    return 0


def spin():
    return (report(), sum(rng(10 ** 13)))


class Runner(object):
    def go(self):
        spin()


def main():
    t = threading.Thread(target=Runner().go, name="spinner")
    t.daemon = True
    t.start()
    t.join()


if __name__ == "__main__":
    main()
