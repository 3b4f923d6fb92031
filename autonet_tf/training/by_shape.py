"""Elementwise arithmetic on many tensors, done once per distinct shape.

A DARTS supernet has over a thousand weight variables in a few dozen shapes.
Per-variable arithmetic (the optimizer update, gradient clipping, the
second-order virtual step, the finite-difference points) costs several graph
nodes per variable, and graph size is what the first step's tracing and
optimisation pay for. :func:`map_by_shape` stacks the tensors of one shape,
applies the rule once to the stack and unstacks the results: the same float
operations on the same elements, in a few nodes per shape.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf


def _groups(tensors: Sequence) -> list:
    """Indices of the tensors of each distinct (shape, dtype), in first-seen order."""
    groups: dict = {}
    for i, tensor in enumerate(tensors):
        groups.setdefault((tuple(tensor.shape), tensor.dtype), []).append(i)
    return list(groups.values())


def map_by_shape(rule: Callable, *tensor_lists: Sequence):
    """``rule`` applied elementwise to parallel lists of tensors, one stack per shape.

    Args:
      rule: takes one stacked tensor per list (same shapes, a new leading
        axis over the tensors of one shape) and returns a tensor or a tuple
        of tensors of that shape. It must be elementwise along the leading
        axis.
      *tensor_lists: lists of equal length; the i-th tensors of all lists
        have the same shape and are grouped by the first list's shapes.

    Returns:
      A list (the rule returned a tensor) or a tuple of lists (it returned
      a tuple), in the order of the inputs.
    """
    first = list(tensor_lists[0])
    results = None
    single = False
    for members in _groups(first):
        stacked = [tf.stack([tensors[i] for i in members]) for tensors in tensor_lists]
        out = rule(*stacked)
        single = not isinstance(out, (tuple, list))
        outs = (out,) if single else tuple(out)
        if results is None:
            results = [[None] * len(first) for _ in outs]
        for result, value in zip(results, outs):
            for i, piece in zip(members, tf.unstack(value)):
                result[i] = piece
    if results is None:
        return []
    return results[0] if single else tuple(results)


def global_norm(tensors: Sequence) -> tf.Tensor:
    """The square root of the sum of squares of every element, summed per shape first.

    Equal to ``tf.linalg.global_norm`` up to the order of the sum (last bits);
    sparse gradients (``tf.IndexedSlices``) take ``tf.linalg.global_norm``.
    """
    tensors = list(tensors)
    if any(isinstance(t, tf.IndexedSlices) for t in tensors):
        return tf.linalg.global_norm(tensors)
    squares = [tf.reduce_sum(tf.square(tf.stack([tensors[i] for i in members])))
               for members in _groups(tensors)]
    return tf.sqrt(tf.add_n(squares))


def clip_by_global_norm(tensors: Sequence, clip_norm) -> tuple[list, tf.Tensor]:
    """``tf.clip_by_global_norm`` with one stack per shape: ``(clipped, global_norm)``.

    The scale ``clip_norm * min(1 / norm, 1 / clip_norm)`` is TensorFlow's,
    so a NaN or infinite norm makes every value NaN as there; the norm is
    :func:`global_norm`. Sparse gradients (``tf.IndexedSlices``) take
    ``tf.clip_by_global_norm``.
    """
    tensors = list(tensors)
    if any(isinstance(t, tf.IndexedSlices) for t in tensors):
        return tf.clip_by_global_norm(tensors, clip_norm)
    norm = global_norm(tensors)
    clip = tf.cast(clip_norm, norm.dtype)
    scale = clip * tf.minimum(1.0 / norm, 1.0 / clip)
    return map_by_shape(lambda stacked: stacked * tf.cast(scale, stacked.dtype), tensors), norm
