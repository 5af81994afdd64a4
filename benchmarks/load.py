"""How the benchmarks time things: the median of repeated runs, idle or beside a competing busy process
(as on a user's machine where a browser or a build keeps a core busy)."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """Run a pure-Python busy loop in another process (one core's worth of load) while inside."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)  # let the scheduler see it
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median milliseconds of `runs` calls of `fn`, after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)
