"""Seeded construction without touching the caller's random state.

Keras draws the initial weights of a layer built without an explicit seed
from Python's ``random`` (and ``keras.random`` calls from its global seed
generator), so a trainer seeds them to build the same model on every run
and every worker. :func:`seeded` does it for the duration of a ``with``
block and then puts back what the caller had: Python's and NumPy's random
states, the Keras seed and TensorFlow's global seed. Everything the
trainers draw later is stateless in (seed, step), so nothing depends on the
global state after construction.
"""

from __future__ import annotations

import contextlib
import random

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common import global_state  # Keras has no public getter for these

_KERAS_KEYS = ("global_random_seed", "global_seed_generator")


#: what TensorFlow reports as the global seed when none is set
_TF_DEFAULT_SEED = 87654321


def _tf_global_seed():
    """TensorFlow's global seed (None when unset); an explicit op seed reads it
    without drawing from TensorFlow's sequence of op seeds."""
    seed, _ = tf.compat.v1.random.get_seed(0)
    return None if seed == _TF_DEFAULT_SEED else seed


@contextlib.contextmanager
def seeded(seed: int):
    """Seeds Python, NumPy, Keras and TensorFlow inside the block, restores them after."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    keras_state = {k: global_state.get_global_attribute(k) for k in _KERAS_KEYS}
    tf_seed = _tf_global_seed()
    keras.utils.set_random_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for key, value in keras_state.items():
            global_state.set_global_attribute(key, value)
        tf.random.set_seed(tf_seed)
