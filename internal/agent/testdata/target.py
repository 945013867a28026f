# Test target for the agent: mimics an injected thread running the
# bootstrap while the main thread keeps printing to its own stdout.
# Usage: target.py seq|par DIR... ; bootstrap i in $PYGLASS_BOOT_<i>.
from __future__ import print_function
import os
import sys
import time
import __main__
try:
    import _thread as threadmod
except ImportError:
    import thread as threadmod


def run_agent(boot, done, i):
    try:
        exec(boot, __main__.__dict__)
    finally:
        done.append(i)


def main():
    before = set(__main__.__dict__)
    orig = (sys.stdout, sys.stderr, sys.stdin, sys.displayhook)
    mode = sys.argv[1]
    dirs = sys.argv[2:]
    boots = [os.environ['PYGLASS_BOOT_%d' % i] for i in range(len(dirs))]
    done = []
    reported = []
    started = []

    def launch(i):
        started.append(i)
        threadmod.start_new_thread(run_agent, (boots[i], done, i))

    if mode == 'par':
        for i in range(len(dirs)):
            launch(i)
    else:
        launch(0)
    tick = 0
    deadline = time.time() + 120
    while time.time() < deadline and len(reported) < len(dirs):
        print('tick %d' % tick)
        sys.stdout.flush()
        tick += 1
        for i in list(done):
            if i in reported:
                continue
            reported.append(i)
            added = sorted(set(__main__.__dict__) - before)
            print('REPORT %d added=%s stdout=%s stderr=%s stdin=%s displayhook=%s hub=%s dir=%s stdinclosed=%s' % (
                i, ','.join(added) or '-',
                sys.stdout is orig[0], sys.stderr is orig[1], sys.stdin is orig[2],
                sys.displayhook is orig[3], hasattr(sys, '_pyglass_hub'),
                os.path.exists(dirs[i]), sys.stdin.closed))
            sys.stdout.flush()
            if mode == 'seq' and i + 1 < len(dirs):
                launch(i + 1)
        time.sleep(0.002)
    print('END ticks=%d' % tick)
    sys.stdout.flush()


main()
