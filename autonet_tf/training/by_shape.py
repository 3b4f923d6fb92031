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


def _stacked(tensors: Sequence) -> list:
    """``(indices, stack)`` for each distinct shape of ``tensors``."""
    tensors = list(tensors)
    return [(members, tf.stack([tensors[i] for i in members])) for members in _groups(tensors)]


def _unstacked(groups, count: int) -> list:
    """The tensors of ``[(indices, stack), ...]`` back in input order."""
    out = [None] * count
    for members, stack in groups:
        for i, piece in zip(members, tf.unstack(stack)):
            out[i] = piece
    return out


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
            results = [[] for _ in outs]
        for result, value in zip(results, outs):
            result.append((members, value))
    if results is None:
        return []
    lists = tuple(_unstacked(result, len(first)) for result in results)
    return lists[0] if single else lists


def any_sparse(tensors) -> bool:
    """Whether any of ``tensors`` is a sparse gradient (``tf.IndexedSlices``)."""
    return any(isinstance(t, tf.IndexedSlices) for t in tensors)


def _norm_of(groups) -> tf.Tensor:
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(stack)) for _, stack in groups]))


def global_norm(tensors: Sequence) -> tf.Tensor:
    """The square root of the sum of squares of every element, summed per shape first.

    Equal to ``tf.linalg.global_norm`` up to the order of the sum (last bits);
    sparse gradients (``tf.IndexedSlices``) take ``tf.linalg.global_norm``.
    """
    tensors = list(tensors)
    if any_sparse(tensors):
        return tf.linalg.global_norm(tensors)
    return _norm_of(_stacked(tensors))


def clip_by_global_norm(tensors: Sequence, clip_norm) -> tuple[list, tf.Tensor]:
    """``tf.clip_by_global_norm`` with one stack per shape: ``(clipped, global_norm)``.

    The scale ``clip_norm * min(1 / norm, 1 / clip_norm)`` is TensorFlow's,
    so a NaN or infinite norm makes every value NaN as there; the norm is
    :func:`global_norm`, from the same stacks that are scaled. Sparse
    gradients (``tf.IndexedSlices``) take ``tf.clip_by_global_norm``.
    """
    tensors = list(tensors)
    if any_sparse(tensors):
        return tf.clip_by_global_norm(tensors, clip_norm)
    groups = _stacked(tensors)
    norm = _norm_of(groups)
    clip = tf.cast(clip_norm, norm.dtype)
    scale = clip * tf.minimum(1.0 / norm, 1.0 / clip)
    scaled = [(members, stack * tf.cast(scale, stack.dtype)) for members, stack in groups]
    return _unstacked(scaled, len(tensors)), norm
