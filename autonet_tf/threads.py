"""How many threads TensorFlow's CPU kernels use; set once, before the first op runs.

TensorFlow has two thread pools: the intra-op pool splits one kernel (a
convolution, a BatchNorm) over several threads, the inter-op pool runs
independent kernels side by side. Its default gives both pools every core.
A DARTS supernet is thousands of small kernels per step, most of them
independent (eight candidate ops on fourteen edges per cell): splitting each
one costs more in synchronisation than it gains, and running them side by
side keeps every core busy. So on a CPU-only host with at most
:data:`AUTO_MAX_CPUS` cores the programs run each kernel on one thread
(``intra_op = 1``) and as many kernels at once as there are cores
(``inter_op = cores``). Measured on 2 cores: the digits search step 0.49 ->
0.26 s, the CIFAR-10 supernet (8 cells, C=16) 2.45 -> 2.06 s at batch 16 and
9.34 -> 8.96 s at batch 64, the retraining of the digits network 2.95 ->
1.75 s per epoch. With a GPU, or more cores than that (not measured), they
keep TensorFlow's defaults. ``--intra_op_threads`` / ``--inter_op_threads``
(and TensorFlow's ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS``)
override the choice.
"""

from __future__ import annotations

import os

from autonet_tf.errors import UserInputError

#: the most cores for which one thread per kernel is the default (measured on 2)
AUTO_MAX_CPUS = 8

_ENV = {"intra": "TF_NUM_INTRAOP_THREADS", "inter": "TF_NUM_INTEROP_THREADS"}


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check(intra: int | None, inter: int | None) -> None:
    """Raises :class:`UserInputError` for a negative thread count."""
    for name, value in (("intra", intra), ("inter", inter)):
        if value is not None and value < 0:
            raise UserInputError(f"--{name}_op_threads={value} must be 0 (TensorFlow's "
                                 f"choice) or more")


def choose(intra: int | None, inter: int | None, has_gpu: bool,
           cpus: int | None = None) -> dict:
    """``{"intra": n or None, "inter": n or None}``: what to set (None: TensorFlow's choice).

    Given values win, then the environment variables; otherwise a CPU-only
    host of at most :data:`AUTO_MAX_CPUS` cores gets one thread per kernel
    and one kernel per core.
    """
    check(intra, inter)
    cpus = cpus or cpu_count()
    auto = not has_gpu and cpus <= AUTO_MAX_CPUS
    chosen = {}
    for name, given, default in (("intra", intra, 1), ("inter", inter, cpus)):
        if given is not None:
            chosen[name] = given or None
        elif auto and _ENV[name] not in os.environ:
            chosen[name] = default
        else:
            chosen[name] = None
    return chosen


def configure(intra: int | None = None, inter: int | None = None) -> dict:
    """Sets TensorFlow's thread pools (see the module docstring); returns :func:`choose`'s dict.

    Must run before TensorFlow executes its first op.
    """
    import tensorflow as tf

    chosen = choose(intra, inter, bool(tf.config.list_physical_devices("GPU")))
    if chosen["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(chosen["intra"])
    if chosen["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(chosen["inter"])
    return chosen
