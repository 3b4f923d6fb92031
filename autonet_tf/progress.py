"""Where the library's progress lines go, and one-line notes for waits without a bar.

Library code never calls ``print``: it calls :func:`say` (a whole line) or
:func:`note` (a wait: ``Exporting ... done in 12.3 s``). Both go to the
current reporter: by default standard output, flushed (what the programs
show). A program or notebook that wants them elsewhere installs its own::

    progress.set_reporter(progress.to_logging())   # logger "autonet_tf", INFO
    progress.set_reporter(lines.append)            # collect them
    progress.set_reporter(None)                    # silence

A reporter is ``fn(line: str)``; a note reaches it as two calls when it
ends (``"message ..."`` then ``"message ... done in N s"``) on reporters
other than the terminal, which shows it on one line as it happens.
Keras' per-epoch progress bars are Keras' own (``--noprogress`` turns them
off).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Callable


def _terminal(line: str) -> None:
    print(line, flush=True, file=sys.stdout)


_REPORTER: list = [_terminal]


def set_reporter(reporter: Callable[[str], None] | None) -> Callable | None:
    """Sends the library's lines to ``reporter`` (None: nowhere); returns the previous one."""
    previous = _REPORTER[0]
    _REPORTER[0] = reporter
    return previous


def to_logging(logger: str = "autonet_tf", level: int = logging.INFO) -> Callable[[str], None]:
    """A reporter that logs each line to ``logger`` at ``level``."""
    log = logging.getLogger(logger)
    return lambda line: log.log(level, "%s", line)


def say(line: str) -> None:
    """Reports one line."""
    if _REPORTER[0] is not None:
        _REPORTER[0](line)


@contextlib.contextmanager
def note(message: str, enabled: bool = True):
    """Reports ``message ...`` now and ``done in N s`` when the block ends."""
    reporter = _REPORTER[0]
    if not enabled or reporter is None:
        yield
        return
    terminal = reporter is _terminal
    if terminal:
        print(f"{message} ...", end="", flush=True, file=sys.stdout)
    else:
        reporter(f"{message} ...")
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        if terminal:
            print(" failed", flush=True)
        else:
            reporter(f"{message} ... failed")
        raise
    done = f" done in {time.perf_counter() - started:.1f} s"
    if terminal:
        print(done, flush=True)
    else:
        reporter(f"{message} ...{done}")
