"""Run the edges that read the same state as one batched op per candidate.

In a DARTS cell every state feeds several MixedOps: each cell input feeds
one edge of every node, node ``i`` one edge of every later node (4, 4, 3, 2
and 1 edges for the 14 edges of a 4-step cell). Those edges apply the same
candidate ops, with their own weights, to the same tensor. Run edge by edge,
the 8-cell supernet is 112 MixedOps of 7 ops each: about 50,000 graph nodes
to trace, differentiate and optimise for one training pass, and hundreds of
small kernels per step.

Here the k edges reading one state run together (:func:`mix_edges`):

* ``sep_conv``/``dil_conv``: the input is tiled k times; one depthwise
  convolution with the k edges' kernels side by side, one grouped 1x1
  convolution (k groups; a batched matrix product where TensorFlow has no
  grouped-convolution gradient, see :data:`GROUPED_CONVOLUTIONS`), one
  BatchNorm over the k edges' channels;
* pooling and ``skip_connect`` compute their output once: it is the same
  for every edge (in training BatchNorm normalises by the batch statistics,
  which are the same too; each edge's moving statistics are still updated);
* ``skip_connect`` on stride 2 (FactorizedReduce): its two 1x1 convolutions
  take the k edges' kernels side by side;
* any other op runs edge by edge.

The variables stay those of each edge (checkpoints, parameter counts and
genotypes are unchanged); they are only read side by side. Every edge
computes exactly what it computes on its own, up to float rounding.
"""

from __future__ import annotations

import tensorflow as tf

from autonet_tf.search_space.ops import (DilConv, FactorizedReduce, Identity, Pool, SepConv,
                                         assign_statistics, channel_shuffle, normalize)


def _value(variable, dtype):
    """A Keras variable's current value (stateless-scope aware) in ``dtype``."""
    return tf.cast(variable.value, dtype)


def _side_by_side(variables, axis, dtype):
    values = [_value(v, dtype) for v in variables]
    return values[0] if len(values) == 1 else tf.concat(values, axis)


def _norm(layers, x, training):
    """BatchNorm of the k edges' channels side by side; updates each edge's statistics."""
    out, updated = normalize(layers, x, training)
    assign_statistics(layers, updated)
    return out


def _norm_shared(layers, x, training):
    """BatchNorm of one tensor that every edge reads: ``(output, shared)``.

    Training: the output depends on the batch only, so it is computed once;
    each edge's moving statistics get the same update from its own values
    (``new_e = m * old_e + (1 - m) * batch = new_0 + m * (old_e - old_0)``).
    Inference: each edge normalises by its own statistics.
    """
    first = layers[0]
    if not (training and first.trainable):
        return _norm(layers, _copies_side_by_side(x, len(layers)), training), False
    out, (mean, variance) = normalize([first], x, training)
    m = first.momentum
    for name, new in (("moving_mean", mean), ("moving_variance", variance)):
        old = tf.convert_to_tensor(getattr(first, name))
        getattr(first, name).assign(new)
        for bn in layers[1:]:
            own = getattr(bn, name)
            own.assign(new + m * (tf.convert_to_tensor(own) - old))
    return out, True


def _copies_side_by_side(x, k: int):
    """``k`` copies of ``x`` along its channels: ``tf.tile(x, [1, 1, 1, k])``.

    A concatenation instead of a tile: the same values, but the gradient of
    a tile transposes int32 shapes, which oneDNN builds of TensorFlow answer
    with an error line on stderr, in the middle of the user's output.
    """
    return tf.concat([x] * k, axis=-1)


def _dil_convs(ops, x, training, tiled: bool):
    """ReLU, depthwise, pointwise, BN of k DilConvs: ``x`` shared, or the k inputs side by side."""
    first, k = ops[0], len(ops)
    conv = first.conv
    x = first.conv_input(x)
    if not tiled:
        x = _copies_side_by_side(x, k)
    depthwise = _side_by_side([op.conv.depthwise_kernel for op in ops], 2, x.dtype)
    pointwise = _side_by_side([op.conv.pointwise_kernel for op in ops], 3, x.dtype)
    y = tf.nn.depthwise_conv2d(x, depthwise, (1,) + tuple(conv.strides) + (1,),
                               conv.padding.upper(), dilations=conv.dilation_rate)
    return _norm([op.bn for op in ops], _grouped_pointwise(y, pointwise, k), training)


def _grouped_pointwise(x, kernel, k: int):
    """k 1x1 convolutions side by side: (batch, h, w, k * C) by (1, 1, C, k * D)."""
    if GROUPED_CONVOLUTIONS:
        return tf.nn.conv2d(x, kernel, 1, "VALID")  # k groups: input k*C, kernel C deep
    c, d = kernel.shape[2], kernel.shape[3] // k
    per_edge = tf.transpose(tf.reshape(kernel[0, 0], [c, k, d]), [1, 0, 2])
    return _join_edges(tf.einsum("bhwec,ecd->bhwed", _split_edges(x, k), per_edge))


def _grouped_convolutions_supported() -> bool:
    """Whether grouped convolutions have CPU gradients here (oneDNN kernels).

    TensorFlow's own CPU kernels have none ("Gradients for grouped
    convolutions are not supported on CPU"), e.g. with
    ``TF_ENABLE_ONEDNN_OPTS=0``; the pointwise convolutions then run as one
    batched matrix product (about 10 % slower steps on 2 CPU cores).
    """
    try:
        from tensorflow.python.util import _pywrap_util_port  # noqa: PLC0415
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


#: grouped 1x1 convolutions (True) or a batched matrix product (False)
GROUPED_CONVOLUTIONS = _grouped_convolutions_supported()


def _factorized_reduces(ops, x, training):
    x, shifted = FactorizedReduce.conv_inputs(x)
    k = len(ops)
    halves = []
    for branch, inputs in (("conv_1", x), ("conv_2", shifted)):
        kernel = _side_by_side([getattr(op, branch).kernel for op in ops], 3, x.dtype)
        y = tf.nn.conv2d(inputs, kernel, 2, "VALID")
        halves.append(_split_edges(y, k))
    y = tf.concat(halves, -1)  # per edge: conv_1 then conv_2, as FactorizedReduce
    return _norm([op.bn for op in ops], _join_edges(y), training)


def run_ops(ops, x, training):
    """The outputs of k ops of one kind (one per edge) on ``x``: ``(tensor, shared)``.

    ``shared``: one output that every edge has (``x``'s shape); otherwise the k
    edges' outputs side by side on the channel axis.
    """
    first = ops[0]
    if isinstance(first, Identity):
        return x, True
    if isinstance(first, Pool):
        pooled = first.pooled(x)
        if first.bn is None:
            return pooled, True
        return _norm_shared([op.bn for op in ops], pooled, training)
    if isinstance(first, SepConv):
        y = _dil_convs([op.block1 for op in ops], x, training, tiled=False)
        return _dil_convs([op.block2 for op in ops], y, training, tiled=True), False
    if isinstance(first, DilConv):
        return _dil_convs(ops, x, training, tiled=False), False
    if isinstance(first, FactorizedReduce):
        return _factorized_reduces(ops, x, training), False
    return tf.concat([op(x, training=training) for op in ops], -1), False


def _split_edges(x, k: int):
    """(batch, h, w, k * C) -> (batch, h, w, k, C); static sizes but the batch."""
    _, h, w, c = x.shape
    return tf.reshape(x, [-1, h, w, k, c // k])


def _join_edges(x):
    """(batch, h, w, k, C) -> (batch, h, w, k * C)."""
    _, h, w, k, c = x.shape
    return tf.reshape(x, [-1, h, w, k * c])


def mix_edges(edges, x, weights, training):
    """The k MixedOps ``edges`` (equal configuration) on one input ``x``.

    ``weights``: (k, primitives) mixing weights, one row per edge. Returns
    (batch, height, width, k, channels): edge e's output at ``[..., e, :]``,
    equal to ``edges[e](x, weights[e])``.
    """
    first, k = edges[0], len(edges)
    part = x.shape[-1] // first.partial_channels
    inputs = x if first.partial_channels == 1 else x[..., :part]
    w = tf.cast(weights, x.dtype)
    total = None
    for position, index in enumerate(first.op_indices):
        out, shared = run_ops([edge.candidate_ops[position] for edge in edges], inputs, training)
        out = out[..., None, :] if shared else _split_edges(out, k)
        term = w[:, index, None] * out
        total = term if total is None else total + term
    if total is None:  # only 'none': zeros
        return tf.stack([edge._mix(x, weights[e], training) for e, edge in enumerate(edges)], -2)
    if first.partial_channels == 1:
        return total
    rest = x[..., part:]
    if first.stride == 2:
        rest = tf.nn.max_pool2d(rest, 2, 2, "SAME")
    rest = tf.broadcast_to(rest[..., None, :], tf.concat([tf.shape(total)[:1], total.shape[1:-1],
                                                          rest.shape[-1:]], 0))
    return channel_shuffle(tf.concat([total, rest], -1), first.partial_channels)
