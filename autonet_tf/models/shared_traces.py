"""Trace each distinct MixedOp once and call it with every edge's own weights.

The supernet repeats the same computation many times: every stride-1 edge of
a cell has the same input shape and the same candidate ops, and so do the
cells of one stage. Traced naively, each of the 112 edges of the 8-cell
supernet is traced, differentiated and optimised on its own (about 50,000
graph nodes for one training pass). :class:`SharedTraces` keeps one
``tf.function`` per distinct (op configuration, input signature, training
flag). An edge calls it with its own variable values as arguments, so
tracing, the gradient graph and Grappler's optimisation happen once per
distinct edge (7 for the DARTS supernet) instead of once per edge.

Two ways to call them (``inline``):

* inlined (the default): TensorFlow inlines the calls before optimising the
  step graph. Python tracing is shared; Grappler still optimises the whole
  graph, which lets it prune what a pass does not need. Measured on 2 CPU
  cores (5 cells, C=8, batch 16): first iteration 60 s, 0.66 s per step.
* called (``inline=False``, ``_noinline``): the step graph holds one call
  node per edge and each function is optimised once. The first iteration is
  much shorter (38 s), every step slower (1.06 s): nothing is optimised
  across a call and a call computes all its outputs.

The function runs the template edge's ops under a ``keras.StatelessScope``
that maps the template's variables to the arguments; BatchNorm moving
statistics updated inside come back as outputs and are assigned to the
calling edge's own variables, so stateful and stateless callers
(``model.stateless_call``) see exactly what a direct call would do.
"""

from __future__ import annotations

import contextlib
import json
import threading

import keras
import tensorflow as tf

_STATE = threading.local()


@contextlib.contextmanager
def _raised(flag: str):
    """Sets a thread-local tracing flag for the duration of a block."""
    previous = getattr(_STATE, flag, False)
    setattr(_STATE, flag, True)
    try:
        yield
    finally:
        setattr(_STATE, flag, previous)


def frozen_weights():
    """Edges traced inside this block give no gradient to their own weights.

    A pass that needs only the gradients of its inputs and of the alphas
    (the architecture step's validation pass, the finite-difference passes)
    then skips every weight-gradient kernel (the costly filter gradients of
    the depthwise convolutions): a non-inlined function cannot be pruned by
    its caller, so the function itself must leave them out.
    """
    return _raised("frozen")


def weights_frozen() -> bool:
    return getattr(_STATE, "frozen", False)


def unshared():
    """Edges traced inside this block are traced on their own (no shared
    function, no batched edges).

    For second derivatives (the exact Hessian-vector products): through the
    shared edge functions, inlined or called, TensorFlow returns wrong
    forward-over-reverse and double-backprop results in float32 (100 % off
    on a 4-step test supernet, while float64 and edges traced on their own
    agree with nested tapes to 1e-6).
    """
    return _raised("unshared")


def sharing_off() -> bool:
    return getattr(_STATE, "unshared", False)


class SharedTraces:
    """One traced function per distinct edge; see the module docstring."""

    def __init__(self, inline: bool = True):
        self.inline = inline
        self._functions = {}

    def __len__(self) -> int:
        return len(self._functions)

    def _key(self, layer, x, weights, training: bool, frozen: bool):
        config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
        return (json.dumps(config, sort_keys=True, default=str), tuple(x.shape), x.dtype.name,
                tuple(weights.shape), weights.dtype.name, bool(training),
                str(layer.dtype_policy.name), frozen)

    def _function(self, template, training: bool, frozen: bool):
        trainable_vars = list(template.trainable_variables)
        non_trainable_vars = list(template.non_trainable_variables)

        def shared(x, weights, trainable, non_trainable):
            if frozen:
                trainable = [tf.stop_gradient(t) for t in trainable]
            mapping = list(zip(trainable_vars, trainable)) + list(
                zip(non_trainable_vars, non_trainable))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                out = template._mix(x, weights, training=training)
            updated = []
            for v, old in zip(non_trainable_vars, non_trainable):
                new = scope.get_current_value(v)
                updated.append(old if new is None else tf.cast(new, old.dtype))
            return out, updated

        attrs = None if self.inline else {"_noinline": True}
        return tf.function(shared, autograph=False, experimental_attributes=attrs)

    def call(self, layer, x, weights, training=None):
        """``layer._mix(x, weights, training)`` through the shared function of its kind."""
        training = bool(training)
        frozen = weights_frozen()
        key = self._key(layer, x, weights, training, frozen)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = self._function(layer, training, frozen)
        trainable = [tf.convert_to_tensor(v.value) for v in layer.trainable_variables]
        non_trainable = [tf.convert_to_tensor(v.value) for v in layer.non_trainable_variables]
        out, updated = fn(x, weights, trainable, non_trainable)
        if training:
            for v, new in zip(layer.non_trainable_variables, updated):
                v.assign(new)
        return out
