"""A competing busy process, as on a user's machine where a browser or a build keeps a core busy."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator


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
