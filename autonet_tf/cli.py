"""Helpers shared by the absl programs in ``bin/`` (no flags are defined here).

``run(main)`` parses flags and runs ``main``; bad input of any kind (an
invalid flag value, a :class:`UserInputError` from the library) prints one
line ``error: ...`` to stderr and exits with code 2, with no traceback.
"""

from __future__ import annotations

import logging
import os
import sys

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from autonet_tf.errors import Preempted, TrainingDiverged, UserInputError  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
#: tf.distribute's conventional restart code for a preempted worker
EXIT_PREEMPTED = 42


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Prints one clean line and exits."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0])


def run(main) -> None:
    """``absl.app.run`` with one-line errors and exit code 2 for bad input."""

    def wrapped(argv):
        if len(argv) > 1:
            fail(f"unexpected positional arguments {argv[1:]}; all options are --flags")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        absl_logging.set_verbosity(absl_logging.WARNING)  # e.g. checkpoint saver INFO lines
        try:
            return main(argv)
        except UserInputError as e:
            fail(str(e))
        except TrainingDiverged as e:
            fail(str(e), EXIT_DIVERGED)
        except Preempted as e:
            fail(str(e), EXIT_PREEMPTED)
        except KeyboardInterrupt:
            fail("interrupted; rerun the same command to resume from the last checkpoint", 130)

    app.run(wrapped, flags_parser=_parse_flags)


def unset_flags(names) -> set:
    """Names among ``names`` the user did not pass on the command line."""
    return {n for n in names if not flags.FLAGS[n].present}
