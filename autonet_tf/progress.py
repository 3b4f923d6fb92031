"""One-line progress notes for waits that have no progress bar.

``with progress.note("exporting SavedModel to runs/x/export"):`` prints
``exporting SavedModel to runs/x/export ...`` before the wait and
``... done in 12.3 s`` after it, so a user always sees what is happening.
"""

from __future__ import annotations

import contextlib
import sys
import time


@contextlib.contextmanager
def note(message: str, enabled: bool = True):
    """Prints ``message ...`` now and ``done in N s`` when the block ends."""
    if not enabled:
        yield
        return
    print(f"{message} ...", end="", flush=True, file=sys.stdout)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        print(" failed", flush=True)
        raise
    print(f" done in {time.perf_counter() - started:.1f} s", flush=True)
