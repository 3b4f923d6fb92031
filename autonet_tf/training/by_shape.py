"""Elementwise arithmetic on many tensors, done once per distinct shape.

A DARTS supernet has over a thousand weight variables in a few dozen shapes.
Per-variable arithmetic (the optimizer update, the second-order virtual step,
the finite-difference points) costs several graph nodes per variable, and
graph size is what the first step's tracing and optimisation pay for.
:func:`map_by_shape` stacks the tensors of one shape, applies the rule once
to the stack and unstacks the results: the same float operations on the same
elements, in a few nodes per shape.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf


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
    groups: dict = {}
    for i, tensor in enumerate(first):
        groups.setdefault((tuple(tensor.shape), tensor.dtype), []).append(i)
    results = None
    single = False
    for members in groups.values():
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
