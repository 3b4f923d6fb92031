"""Per-example losses and counts the trainers' steps share."""

from __future__ import annotations

import keras
import tensorflow as tf


def sparse_ce(labels, logits):
    """Per-example cross entropy from logits."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def smoothed_ce(labels, logits, smoothing: float = 0.0):
    """Per-example cross entropy against (1 - s) * one-hot + s / classes (s = 0: plain)."""
    ce = sparse_ce(labels, logits)
    if not smoothing:
        return ce
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return (1.0 - smoothing) * tf.cast(ce, tf.float32) - smoothing * tf.reduce_mean(log_p, -1)


def count_correct(labels, logits):
    return tf.reduce_sum(tf.cast(
        tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32))
