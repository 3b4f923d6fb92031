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
  times (2 cores; docs/benchmarks.md). Switching any other single pass off
  made the digits step graph slower or no faster; what is skipped besides
  is the idle work below, found by logging each pass.
* **Grappler's idle work skipped on hosts without a GPU**
  (:data:`CPU_REWRITE_OPTIONS`): one round of its passes instead of two,
  no memory optimizer (its swapping and recomputation rewrite GPU graphs),
  no layout optimizer (it converts layouts for GPU kernels), no
  conditional code motion and no TFG (MLIR) passes. Logged per pass
  (``TF_CPP_VMODULE=meta_optimizer=1``) on the digits search, none of
  these changed a single node of any graph; they took 8.2 of the 14.6 s
  Grappler spent. The CIFAR-10 supernet's first
  iteration took 50.0 instead of 72.9 s at batch 16 and 62.3 instead of
  80.4 s at batch 64 (first order), 116.6 instead of 205.3 s at batch 16
  (second order), with the same step times (2 cores). TensorFlow has no
  public switch for these fields, so they go into the eager context's base
  ``ConfigProto``, which every function call's options start from.
  The TFG passes (attribute consolidation, shape inference, control-flow
  sinking, dead-function elimination) changed no node of the CIFAR-10
  supernet's step graph either; without them its first iteration took
  41.3 instead of 49.9 s (batch 16, first order), with the same step time
  and loss.
* **No remapper for training steps on hosts without a GPU**
  (:data:`TRAINING_REWRITE_OPTIONS`, :func:`training_steps`). The remapper
  fuses patterns (convolution + bias + activation, BatchNorm in inference)
  for oneDNN kernels: 211 in the digits validation graph, but 2 in the
  search step graph, whose intermediate values the gradients need. On the
  CIFAR-10 supernet's step (8 cells, C=16, batch 16, first order) it took
  3.1 s of the first iteration for those 2 nodes; without it the first
  iteration took 39.0 instead of 42.3 s, with the same step times and the
  same loss. A function call's Grappler options are the calling thread's
  ``function_call_options``, so the training steps are called with their
  own, and every other graph (validation, export) keeps the remapper.
  Two more passes are off for training steps there: the loop optimizer
  and the implementation selector. Logged per pass, neither changed a node
  or an edge of any training step (the CIFAR-10 supernet's, the digits
  search's with and without ``--steps_per_loop``, the recurrent search's);
  on the CIFAR-10 supernet's step they took 0.9 s of the first iteration
  (paired runs, batch 16, first order: 31.2 and 29.8 s against 33.2 and
  30.8 s, steps no slower).
"""

from __future__ import annotations

import contextlib
import gc

#: (young, middle, old) generation thresholds of Python's garbage collector
GC_THRESHOLDS = (20000, 20, 20)

#: Grappler options set by :func:`configure`
GRAPPLER_OPTIONS = {"constant_folding": False}

#: RewriterConfig fields of training-step calls (:func:`training_steps`) when no GPU is visible
TRAINING_REWRITE_OPTIONS = {"remapping": "OFF", "loop_optimization": "OFF",
                            "implementation_selector": "OFF"}

#: RewriterConfig fields set by :func:`configure` when no GPU is visible
CPU_REWRITE_OPTIONS = {"meta_optimizer_iterations": "ONE", "memory_optimization": "NO_MEM_OPT",
                       "layout_optimizer": "OFF", "experimental_conditional_code_motion": "OFF",
                       "disable_tfg_optimizer": True}


def configure_collector() -> None:
    """Sets :data:`GC_THRESHOLDS` unless the collector is off."""
    if gc.isenabled():
        gc.set_threshold(*GC_THRESHOLDS)


def set_rewrite_options(options: dict) -> bool:
    """Sets Grappler ``RewriterConfig`` fields (name -> enum value name, or a bool) for
    later graphs.

    Returns False, changing nothing, when this TensorFlow's eager context
    does not have the private fields used (the settings only save time).
    """
    from tensorflow.core.protobuf import config_pb2

    ctx = _eager_context()
    if ctx is None:
        return False
    config = config_pb2.ConfigProto()
    if ctx._config is not None:
        config.CopyFrom(ctx._config)
    _set_fields(config.graph_options.rewrite_options, options)
    ctx._config = config
    ctx._thread_local_data.function_call_options = None  # rebuilt from the new config
    return True


def _eager_context():
    """TensorFlow's eager context, or None when it lacks the private fields
    (``_config``, ``_thread_local_data``) the Grappler settings are written to."""
    from tensorflow.python.eager import context

    ctx = context.context()
    return ctx if hasattr(ctx, "_config") and hasattr(ctx, "_thread_local_data") else None


def _set_fields(rewrite, options: dict) -> None:
    """Sets RewriterConfig fields: a bool as is, else the enum value named."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    for name, value in options.items():
        setattr(rewrite, name, value if isinstance(value, bool)
                else getattr(rewriter_config_pb2.RewriterConfig, value))


def configure() -> None:
    """The garbage-collector thresholds, :data:`GRAPPLER_OPTIONS` and, on
    hosts without a GPU, :data:`CPU_REWRITE_OPTIONS`."""
    import tensorflow as tf

    configure_collector()
    if not tf.config.list_physical_devices("GPU"):
        set_rewrite_options(CPU_REWRITE_OPTIONS)
        _TRAINING_OPTIONS.update(TRAINING_REWRITE_OPTIONS)
    tf.config.optimizer.set_experimental_options(GRAPPLER_OPTIONS)


#: the training steps' rewrite fields, once :func:`configure` chose them
_TRAINING_OPTIONS: dict = {}
_training_call_options: list = []  # (base config it was derived from, FunctionCallOptions)


@contextlib.contextmanager
def training_steps():
    """Calls of training-step functions in this block get
    :data:`TRAINING_REWRITE_OPTIONS` (on hosts without a GPU, after
    :func:`configure`): Grappler optimises them without the remapper.

    Every call of one function must use the same options (they are part
    of the key under which TensorFlow keeps the optimised function), so
    the programs and the benchmarks run every training step in this block.
    """
    options = _training_call_options_now()
    if options is None:
        yield
        return
    from tensorflow.python.eager import context

    ctx = context.context()
    saved = ctx._thread_local_data.function_call_options
    ctx.function_call_options = options
    try:
        yield
    finally:
        ctx._thread_local_data.function_call_options = saved


def _training_call_options_now():
    """The FunctionCallOptions of training steps (None: the default ones), derived
    from the eager context's current config and cached while it is unchanged."""
    if not _TRAINING_OPTIONS:
        return None
    from tensorflow.python.eager import context

    ctx = _eager_context()
    if ctx is None:
        return None
    base = ctx.function_call_options.config_proto_serialized
    if _training_call_options and _training_call_options[0][0] == base:
        return _training_call_options[0][1]
    config = type(ctx.config)()
    config.ParseFromString(base)
    _set_fields(config.graph_options.rewrite_options, _TRAINING_OPTIONS)
    options = context.FunctionCallOptions(config_proto=config)
    _training_call_options[:] = [(base, options)]
    return options

