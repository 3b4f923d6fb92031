"""Mixed precision (``--mixed_precision``): the Keras dtype policy a model is built under.

``mixed_float16`` / ``mixed_bfloat16`` compute in 16 bits and keep every
variable in float32. The DARTS models keep the alphas, their softmax, the
losses (log-softmax) and the recurrent search cell's BatchNorm statistics in
float32 whatever the policy. bfloat16 has float32's exponent range and needs
no loss scaling. float16 does: its optimizers are wrapped in Keras'
``LossScaleOptimizer`` (dynamic scale, 2**15 at first, halved on a
non-finite gradient, whose update is then skipped; doubled after 2000 good
steps). Gradient code multiplies the loss by :func:`loss_scale` and divides
the gradients right after differentiation (:func:`unscale`), so clipping,
virtual steps and finite differences see true gradients; :func:`apply`
hands them back scaled to the LossScaleOptimizer, which checks them (summed
over replicas, so every replica decides alike) and applies or skips.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

CHOICES = ("off", "mixed_float16", "mixed_bfloat16")


def loss_scaled(optimizer, mixed_precision: str):
    """``optimizer`` wrapped in a dynamic LossScaleOptimizer under mixed_float16."""
    if mixed_precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_scaled")
    return optimizer


def base_optimizer(optimizer):
    """The optimizer that updates the variables (inside a LossScaleOptimizer, if any)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def loss_scale(optimizer):
    """The current loss scale of a LossScaleOptimizer (a float32 tensor), else None."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.convert_to_tensor(optimizer.dynamic_scale)
    return None


def scale_loss(loss, scale):
    return loss if scale is None else loss * tf.cast(scale, loss.dtype)


def unscale(grads, scale):
    """Gradients of a loss scaled by ``scale``, divided back (None: unchanged)."""
    if scale is None:
        return grads
    return [None if g is None else g / tf.cast(scale, g.dtype) for g in grads]


def norm_metrics(norm, optimizer, replicas: int) -> dict:
    """Per-replica shares of the step's gradient norm and, under loss scaling, of 'skipped'.

    A step whose float16 gradients overflowed is skipped by the
    LossScaleOptimizer: it reports grad_norm 0 and skipped 1 (the epoch's
    mean of 'skipped' is the fraction of skipped steps).
    """
    if loss_scale(optimizer) is None:
        return {"grad_norm": norm / replicas}
    finite = tf.math.is_finite(norm)
    return {"grad_norm": tf.where(finite, norm, tf.zeros_like(norm)) / replicas,
            "skipped": (1.0 - tf.cast(finite, norm.dtype)) / replicas}


def apply(optimizer, grads, variables, factor: float = 1.0) -> None:
    """Applies true gradients times ``factor``; a LossScaleOptimizer gets them scaled."""
    scale = loss_scale(optimizer)
    if scale is not None:
        factor = factor * scale
    if not (isinstance(factor, float) and factor == 1.0):
        grads = [g * tf.cast(factor, g.dtype) for g in grads]
    optimizer.apply(grads, variables)


@contextlib.contextmanager
def dtype_policy(mixed_precision: str):
    """Sets the global Keras dtype policy while models are built, then restores it."""
    if mixed_precision in (None, "off") or mixed_precision == keras.config.dtype_policy().name:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(mixed_precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
