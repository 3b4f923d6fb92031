"""Helpers shared by the absl programs in ``bin/`` (no flags are defined here).

``run(main)`` parses flags and runs ``main``; bad input of any kind (an
invalid flag value, a :class:`UserInputError` from the library) prints one
line ``error: ...`` to stderr and exits with code 2, with no traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import tempfile
import textwrap

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from autonet_tf import startup, threads  # noqa: E402
from autonet_tf.errors import Preempted, TrainingDiverged, UserInputError  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
#: tf.distribute's conventional restart code for a preempted worker
EXIT_PREEMPTED = 42


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Prints one clean line and exits."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


#: flag groups of the shared flag definitions, title -> flag names (see flag_group)
FLAG_GROUPS: dict[str, list[str]] = {}

_HELP = ("--help", "-h", "-?", "--helpshort")


@contextlib.contextmanager
def flag_group(title: str):
    """Flags defined inside the block are listed under ``title`` by ``--help``."""
    before = set(flags.FLAGS)
    yield
    taken = {n for names in FLAG_GROUPS.values() for n in names}  # by nested groups
    FLAG_GROUPS.setdefault(title, []).extend(
        n for n in flags.FLAGS if n not in before and n not in taken)


def _describe(flag) -> str:
    text = flag.help or ""
    default = flag.default
    if isinstance(default, bool):
        shown = f"--{flag.name}" if default else f"--no{flag.name}"
        text += f" (default: {shown})"
    elif default is not None:
        text += f" (default: {default!r})"
    wrapped = textwrap.fill(text, width=88, initial_indent="      ", subsequent_indent="      ")
    return f"  --{flag.name}\n{wrapped}"


def help_text(full: bool = False) -> str:
    """The program's docstring, its own flags, then every shared group it defines.

    With ``full`` also the flags of absl and TensorFlow.
    """
    program = _PROGRAM[0] or sys.modules.get("__main__")
    parts = [(program.__doc__ or "").strip()] if program is not None and program.__doc__ else []
    grouped = {n for names in FLAG_GROUPS.values() for n in names}
    by_module = flags.FLAGS.flags_by_module_dict()
    names = {sys.argv[0], "__main__", getattr(program, "__name__", None),
             getattr(program, "__file__", None)}
    own_module = next((m for m in by_module if m in names), None)
    own = [f for f in by_module.get(own_module, []) if f.name not in grouped]
    sections = []
    if own:
        sections.append(("Flags of this program", own))
    for title, names in FLAG_GROUPS.items():
        present = [flags.FLAGS[n] for n in dict.fromkeys(names) if n in flags.FLAGS]
        if present:
            sections.append((title, present))
    if full:
        shown = {f.name for _, group in sections for f in group}
        for module, group in sorted(by_module.items()):
            rest = [f for f in group if f.name not in shown]
            if rest:
                sections.append((f"Flags of {module}", rest))
    for title, group in sections:
        parts.append(f"{title}:\n" + "\n".join(_describe(f) for f in group))
    if not full:
        parts.append("--helpfull also lists absl's and TensorFlow's own flags.")
    return "\n\n".join(parts) + "\n"


def _parse_flags(argv):
    asked = [a for a in argv[1:] if a in _HELP or a == "--helpfull"]
    if asked:
        sys.stdout.write(help_text(full="--helpfull" in asked))
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0])


# Start-up lines TensorFlow's C++ runtime writes on every CPU-only start, before
# TF_CPP_MIN_LOG_LEVEL takes effect; they say nothing a user can act on.
_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
    "cudart_stub.cc", "cuda_platform.cc", "failed call to cuInit", "cpu_feature_guard.cc",
    "To enable the following instructions", "Could not find cuda drivers",
    "Unable to register cu", "computation_placer.cc", "cuda_dnn.cc", "cuda_fft.cc",
    "cuda_blas.cc", "TF-TRT Warning")


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes its devices, with the start-up noise filtered out.

    Anything else TensorFlow writes to stderr meanwhile is passed on. Skipped
    when the user sets TF_CPP_MIN_LOG_LEVEL=0 to see everything.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # imported already when a file flag was checked

            tf.config.list_physical_devices("GPU")  # the CUDA probe
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        for line in captured.read().decode("utf-8", "replace").splitlines():
            if line.strip() and not any(noise in line for noise in _STARTUP_NOISE):
                print(line, file=sys.stderr)


def avoid_onednn_crash(network: str, image_size: int | None = None) -> None:
    """Turns TensorFlow's oneDNN CPU kernels off for the ImageNet network (before TF starts).

    TensorFlow 2.21's oneDNN Conv2DBackpropFilter corrupts the heap (segfault
    or "double free") on the ImageNet network for inputs of 192 pixels and
    up on AVX-512 CPUs; its plain kernels train it. GPU and TPU kernels are
    unaffected. A TF_ENABLE_ONEDNN_OPTS the user set is kept. ``--network=auto``
    picks the ImageNet network for inputs of 128 pixels and up, so an
    ``--image_size`` that large counts too (without it, the image size is not
    known before TensorFlow starts).
    """
    imagenet = network == "imagenet" or (network == "auto" and (image_size or 0) >= 128)
    if not imagenet or "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return
    if "tensorflow" in sys.modules:
        return  # too late to change: TensorFlow is running already
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    print("Note: oneDNN CPU kernels off for the ImageNet network (TensorFlow 2.21's oneDNN "
          "convolution gradient crashes on it; set TF_ENABLE_ONEDNN_OPTS=1 to force them)",
          flush=True)


#: flags naming files or folders that the programs may read while they check
#: their flags; local ones are read without TensorFlow, but one that names a
#: TensorFlow filesystem (gs://, s3://, ram://, ...) makes TensorFlow start
#: before the program's main
FILE_FLAGS = ("config_file", "genotype", "data_dir", "dataset", "saved_model")

_STARTED: list = []


def _names_remote_files() -> bool:
    """Whether a flag of :data:`FILE_FLAGS` names a ``scheme://`` path."""
    for name in FILE_FLAGS:
        if name in flags.FLAGS and flags.FLAGS[name].present:
            value = flags.FLAGS[name].value
            if isinstance(value, str) and "://" in value:
                return True
    return False


def _thread_flags() -> tuple:
    return tuple(flags.FLAGS[name].value if name in flags.FLAGS else None
                 for name in ("intra_op_threads", "inter_op_threads"))


def start_tensorflow() -> None:
    """Starts TensorFlow for a program whose flags have been checked (once per process).

    Imports it with the start-up noise filtered out, then applies the
    programs' start-up settings (:func:`autonet_tf.startup.configure`) and
    thread pools (``--intra_op_threads``/``--inter_op_threads``), which must
    precede TensorFlow's first op. Programs call it after reading their
    flags (``run(main, flags_first=True)``), so that bad input is answered
    without the seconds TensorFlow takes to start.
    """
    if _STARTED:
        return
    _STARTED.append(True)
    _import_tensorflow_quietly()
    startup.configure()
    threads.configure(*_thread_flags())
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    absl_logging.set_verbosity(absl_logging.WARNING)  # e.g. checkpoint saver INFO lines


#: the module of the program being run (its docstring and flags head --help)
_PROGRAM: list = [None]


def run(main, flags_first: bool = False) -> None:
    """``absl.app.run`` with one-line errors and exit code 2 for bad input.

    TensorFlow starts (:func:`start_tensorflow`) before ``main``, or with
    ``flags_first`` when ``main`` calls :func:`start_tensorflow` itself once
    it has checked its flags (unless a flag names a ``scheme://`` path: those
    are read through TensorFlow's filesystems, so it starts first then).
    """
    _PROGRAM[0] = sys.modules.get(main.__module__)

    def wrapped(argv):
        if len(argv) > 1:
            fail(f"unexpected positional arguments {argv[1:]}; all options are --flags")
        _check_path_flags()
        if "network" in flags.FLAGS:
            avoid_onednn_crash(flags.FLAGS.network, flags.FLAGS["image_size"].value
                               if "image_size" in flags.FLAGS else None)
        try:
            threads.check(*_thread_flags())
        except UserInputError as e:
            fail(str(e))
        if not flags_first or _names_remote_files():
            start_tensorflow()
        try:
            code = main(argv)
        except UserInputError as e:
            fail(str(e))
        except TrainingDiverged as e:
            fail(str(e), EXIT_DIVERGED)
        except Preempted as e:
            # The checkpoint is saved. Tearing down a cluster that lost a
            # worker makes TensorFlow's gRPC threads log connection errors
            # after this line (or hang): end the process here instead.
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(EXIT_PREEMPTED)
        except KeyboardInterrupt:
            fail("interrupted; rerun the same command to resume from the last checkpoint", 130)
        end_process(0 if code is None else code)

    app.run(wrapped, flags_parser=_parse_flags)


def end_process(code: int) -> None:
    """Ends a finished program without Python's object-by-object teardown.

    Freeing the traced graphs and TensorFlow's runtime one object at a time
    took 2.8-3.9 s after the README's search (measured on a 2-core CPU) and
    showed nothing. By the time a program returns, everything it writes is
    closed (checkpoints, exports, history, flushed TensorBoard writers), so
    the exit handlers run (logging, multiprocessing, TensorFlow's own), the
    streams are flushed and the process ends.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: string flags that name a file or directory: given, they may not be empty
PATH_FLAGS = ("model_dir", "data_dir", "output_dir", "directory", "saved_model", "output",
              "genotype", "space", "dataset")


def _check_path_flags() -> None:
    """An empty path (``--model_dir=``) is an error, never a silent default."""
    for name in PATH_FLAGS:
        if name in flags.FLAGS and flags.FLAGS[name].present:
            value = flags.FLAGS[name].value
            if isinstance(value, str) and not value.strip():
                fail(f"--{name} is empty: expected a path")


#: flags whose value came from --config_file or --params_override (cli_flags.read_config_files)
SEEDED: set = set()


def given(name: str) -> bool:
    """Whether flag ``name`` was passed on the command line or set by a config file."""
    return flags.FLAGS[name].present or name in SEEDED


def unset_flags(names) -> set:
    """Names among ``names`` neither on the command line nor from a config file."""
    return {n for n in names if not given(n)}
