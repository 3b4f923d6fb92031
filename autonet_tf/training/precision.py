"""Mixed precision (``--mixed_precision``): the Keras dtype policy a model is built under.

``mixed_float16`` / ``mixed_bfloat16`` compute in 16 bits and keep every
variable in float32. The DARTS models keep the alphas, their softmax, the
losses (log-softmax) and the recurrent search cell's BatchNorm statistics in
float32 whatever the policy. bfloat16 has float32's exponent range and needs
no loss scaling; float16 runs without loss scaling here (gradients may
underflow on some models).
"""

from __future__ import annotations

import contextlib

import keras

CHOICES = ("off", "mixed_float16", "mixed_bfloat16")


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
