# A multiprocessing pool for `record --subprocesses`: the pool (2 workers
# running work()) starts only when a line arrives on stdin, after the
# profiler has started; the parent waits for the results. Python 2.7 and
# 3.x.
import multiprocessing
import sys


def work(n):
    x = 0
    while True:
        for i in range(100000):
            x += i
        n -= 1
        if n == 0:
            return x


if __name__ == "__main__":
    print("READY")
    sys.stdout.flush()
    sys.stdin.readline()
    pool = multiprocessing.Pool(2)
    print("POOL")
    sys.stdout.flush()
    pool.map(work, [10 ** 9] * 2)
