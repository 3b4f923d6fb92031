"""Process-wide settings the programs (and the tests) make once, before the first graph.

* **Python's garbage collector.** Tracing a training step creates hundreds
  of thousands of long-lived Python objects (graph operations, tensors,
  their traceback records). With Python's default thresholds (700, 10, 10)
  the collector keeps walking all of them: on 2 cores the README's main
  command spent 3.4 s in 14 full passes and 3,300 young ones. With
  :data:`GC_THRESHOLDS` it runs a thirtieth as often: 0.7 s and no full
  pass in the same command, peak memory 1.71 against 1.70 GB. Reference
  cycles are still collected, only in larger batches.
* **Grappler's constant folding off.** The supernet's step graphs hold no
  large constant expressions worth folding (weights are variables), but
  the pass walks every one of their tens of thousands of nodes: without it
  the CIFAR-10 supernet's first iteration took 61.6 instead of 69.9 s and
  the digits search step graph 15.7-15.8 instead of 18.1-18.8 s, with the same step
  times (2 cores; docs/benchmarks.md). The other Grappler passes stay on
  (each one off made the digits step graph slower or no faster).
"""

from __future__ import annotations

import gc

#: (young, middle, old) generation thresholds of Python's garbage collector
GC_THRESHOLDS = (20000, 20, 20)

#: Grappler options set by :func:`configure`
GRAPPLER_OPTIONS = {"constant_folding": False}


def configure_collector() -> None:
    """Sets :data:`GC_THRESHOLDS` unless the collector is off."""
    if gc.isenabled():
        gc.set_threshold(*GC_THRESHOLDS)


def configure() -> None:
    """The garbage-collector thresholds and :data:`GRAPPLER_OPTIONS`."""
    import tensorflow as tf

    configure_collector()
    tf.config.optimizer.set_experimental_options(GRAPPLER_OPTIONS)
