"""Candidate operations of the DARTS CNN search space, as Keras layers.

Every op matches the reference implementation (quark0/darts ``operations.py``)
op for op, in NHWC layout:

* convolutions have no bias and are followed by BatchNorm;
* ``sep_conv_kxk`` is (ReLU, depthwise kxk, pointwise 1x1, BN) twice, the first
  depthwise carrying the stride;
* ``dil_conv_kxk`` is ReLU, depthwise kxk with dilation 2, pointwise, BN;
* pooling uses padding 1; average pooling does not count the padding;
* ``skip_connect`` on stride 2 is :class:`FactorizedReduce`;
* ``none`` is a zero tensor (on stride 2 it also halves the spatial size).

Strided ops pad symmetrically like PyTorch (``padding=k//2``), so the output
of every op on stride 2 is ``ceil(H/2)``; odd sizes such as 7x7 work.

BatchNorm uses the PyTorch defaults (epsilon 1e-5, momentum 0.1, i.e. Keras
``momentum=0.9``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from autonet_tf.errors import UserInputError
from autonet_tf.tracking import CheckpointCollections

_PACKAGE = "autonet_tf"

# PyTorch BatchNorm2d defaults, as used by the reference implementation.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras momentum = 1 - PyTorch momentum (0.1).


def batch_norm(affine: bool, sync: bool = False, name: str | None = None):
    """BatchNorm over the channel axis; ``affine=False`` drops gamma/beta."""
    return BatchNorm(affine=affine, synchronized=sync, name=name)


def _moments(inputs, axes, count, synchronized: bool):
    """(mean, biased variance, example count): of this replica's batch, or synchronised.

    Synchronised moments are over the global batch, with ONE all-reduce.
    Keras' synchronised moments all-reduce the sum, the sum of squares and the
    count separately; every replica holds the same number of examples here,
    so the count is known and the two sums travel in one tensor. Under
    MultiWorkerMirroredStrategy each all-reduce is a network round trip, and
    the supernet has hundreds of BatchNorms per pass (forward and backward).
    """
    ctx = tf.distribute.get_replica_context() if synchronized else None
    if ctx is None or ctx.num_replicas_in_sync == 1:
        mean = tf.reduce_mean(inputs, axes)
        return mean, tf.reduce_mean(tf.square(inputs - mean), axes), count
    x = tf.cast(inputs, tf.float32)
    sums = tf.concat([tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes)], 0)
    sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sums)
    count = count * ctx.num_replicas_in_sync
    mean, mean_square = tf.split(sums / count, 2)
    return mean, tf.maximum(mean_square - tf.square(mean), 0.0), count


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """Keras BatchNormalization that runs TensorFlow's fused kernel on NHWC input.

    Keras 3 builds BatchNorm from a dozen elementwise ops; the supernet has
    hundreds of them per forward pass, which makes graphs of ~100k nodes that
    take minutes to trace and optimise. The fused kernel (one op forward, one
    backward) gives the same result. Synchronised (cross-replica) statistics
    and non-4D inputs use the Keras implementation. Defaults follow PyTorch's
    BatchNorm2d (epsilon 1e-5, momentum 0.1 = Keras 0.9).
    """

    def __init__(self, affine: bool = True, synchronized: bool = False, **kwargs):
        kwargs.setdefault("epsilon", BN_EPSILON)
        kwargs.setdefault("momentum", BN_MOMENTUM)
        kwargs.setdefault("center", affine)
        kwargs.setdefault("scale", affine)
        super().__init__(synchronized=synchronized, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if self.axis not in (-1, len(inputs.shape) - 1):
            return super().call(inputs, training=training, mask=mask)
        outputs, updated = normalize([self], inputs, training)
        assign_statistics([self], updated)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.pop("center", None)
        config.pop("scale", None)
        config["affine"] = self.center and self.scale
        return config


def normalize(layers, inputs, training):
    """BatchNorm of ``inputs`` by the layers' settings; returns (outputs, updated).

    ``layers`` are :class:`BatchNorm` layers of equal settings whose channels,
    side by side, are the channels of ``inputs`` (one layer: a plain
    BatchNorm; several: the edges of a batched group, see
    :mod:`~autonet_tf.models.edge_batching`). ``updated`` is the new (moving
    mean, moving variance), concatenated in layer order, when the statistics
    are updated (training), else None. Nothing is assigned here.
    """
    layer = layers[0]
    channels = inputs.shape[-1]

    def joined(attr):
        values = [tf.convert_to_tensor(getattr(bn, attr)) for bn in layers]
        return values[0] if len(values) == 1 else tf.concat(values, 0)

    scale = joined("gamma") if layer.scale else tf.ones([channels], tf.float32)
    offset = joined("beta") if layer.center else tf.zeros([channels], tf.float32)
    moving_mean, moving_variance = joined("moving_mean"), joined("moving_variance")
    train = bool(training) and layer.trainable
    fused = len(inputs.shape) == 4 and inputs.dtype != tf.float64
    if (train and layer.synchronized) or not fused:
        # Explicit moments: no stop_gradient (unlike Keras), so nested
        # tapes give exact second derivatives; statistics over the global
        # batch when synchronised; the fused kernel has no float64.
        updated = None
        if train:
            axes = list(range(len(inputs.shape) - 1))
            count = tf.cast(tf.size(inputs) // channels, tf.float32)
            mean, variance, count = _moments(inputs, axes, count, layer.synchronized)
            unbiased = variance * tf.cast(count / tf.maximum(count - 1.0, 1.0), variance.dtype)
            m = layer.momentum
            updated = (moving_mean * m + tf.cast(mean, moving_mean.dtype) * (1 - m),
                       moving_variance * m + tf.cast(unbiased, moving_variance.dtype) * (1 - m))
        else:
            mean, variance = moving_mean, moving_variance
        outputs = tf.nn.batch_normalization(
            inputs, tf.cast(mean, inputs.dtype), tf.cast(variance, inputs.dtype),
            tf.cast(offset, inputs.dtype), tf.cast(scale, inputs.dtype), layer.epsilon)
        return outputs, updated
    if train:
        # With exponential_avg_factor the fused op returns the updated
        # moving statistics (PyTorch semantics: unbiased batch variance).
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, mean=moving_mean, variance=moving_variance,
            epsilon=layer.epsilon, is_training=True,
            exponential_avg_factor=1.0 - layer.momentum)
        return outputs, (mean, variance)
    outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
        inputs, scale, offset, mean=moving_mean, variance=moving_variance,
        epsilon=layer.epsilon, is_training=False)
    return outputs, None


def assign_statistics(layers, updated) -> None:
    """Assigns :func:`normalize`'s ``updated`` statistics (None: nothing) to each layer's share."""
    if updated is None:
        return
    for name, joined in zip(("moving_mean", "moving_variance"), updated):
        parts = [joined] if len(layers) == 1 else tf.split(joined, len(layers))
        for bn, part in zip(layers, parts):
            getattr(bn, name).assign(part)


def channel_shuffle(x, groups: int):
    """Interleaves ``groups`` channel groups of the last axis, as ShuffleNet and PC-DARTS do."""
    inner = list(x.shape[1:-1])  # static; the batch may not be
    c = x.shape[-1]
    rank = len(x.shape)
    x = tf.reshape(x, [-1] + inner + [groups, c // groups])
    x = tf.transpose(x, list(range(rank - 1)) + [rank, rank - 1])
    return tf.reshape(x, [-1] + inner + [c])


def _pad(x, pad: int):
    return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


class _Op(CheckpointCollections, keras.layers.Layer):
    """Base class keeping the common constructor arguments in the config."""

    def __init__(self, stride: int = 1, affine: bool = True,
                 sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.stride = stride
        self.affine = affine
        self.sync_bn = sync_bn

    def build(self, *shapes):
        # Sub-layers build on their first call. Defining build() stops Keras
        # from tracing call() symbolically to build, which on nested cells
        # repeats the whole sub-tree at every level of nesting.
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(stride=self.stride, affine=self.affine,
                      sync_bn=self.sync_bn)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReLUConvBN(_Op):
    """ReLU, Conv kxk (no bias), BN. Used for the 1x1 cell preprocessing."""

    def __init__(self, filters: int, kernel_size: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.conv = keras.layers.Conv2D(
            filters, kernel_size, strides=self.stride, use_bias=False,
            padding="same" if self.stride == 1 else "valid")
        self.bn = batch_norm(self.affine, self.sync_bn)

    def call(self, x, training=None):
        x = tf.nn.relu(x)
        if self.stride != 1:
            x = _pad(x, self.kernel_size // 2)
        return self.bn(self.conv(x), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DilConv(_Op):
    """ReLU, depthwise kxk (dilated), pointwise 1x1, BN.

    A depthwise conv with stride 2 and dilation 2 (which TensorFlow does not
    run directly) only ever reads even rows and columns of the padded input,
    so it equals subsampling ``x[:, ::2, ::2]`` followed by the undilated kxk
    conv at stride 1: same weights, same output, a quarter of the work.
    """

    def __init__(self, filters: int, kernel_size: int, dilation: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation = dilation
        folded = self.stride == 2 and dilation == 2
        self._subsample_first = folded
        self._explicit_pad = self.stride == 2 and not folded
        if self.stride == 2 and dilation not in (1, 2):
            raise ValueError(f"dilation must be 1 or 2 with stride 2, got {dilation}")
        self.conv = keras.layers.SeparableConv2D(
            filters, kernel_size,
            strides=1 if folded else self.stride,
            dilation_rate=1 if folded else dilation,
            padding="valid" if self._explicit_pad else "same",
            use_bias=False)
        self.bn = batch_norm(self.affine, self.sync_bn)

    def call(self, x, training=None):
        return self.bn(self.conv(self.conv_input(x)), training=training)

    def conv_input(self, x):
        """ReLU, then the subsampling or padding the convolution expects."""
        x = tf.nn.relu(x)
        if self._subsample_first:
            return x[:, ::2, ::2, :]
        if self._explicit_pad:
            return _pad(x, self.dilation * (self.kernel_size - 1) // 2)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      dilation=self.dilation)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SepConv(_Op):
    """Two stacked (ReLU, depthwise kxk, pointwise 1x1, BN) blocks.

    The first block keeps ``in_channels`` (reference: C_in -> C_in) and
    carries the stride; the second maps to ``filters``.
    """

    def __init__(self, filters: int, kernel_size: int,
                 in_channels: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.in_channels = filters if in_channels is None else in_channels
        common = dict(affine=self.affine, sync_bn=self.sync_bn)
        self.block1 = DilConv(self.in_channels, kernel_size, 1,
                              stride=self.stride, **common)
        self.block2 = DilConv(filters, kernel_size, 1, stride=1, **common)

    def call(self, x, training=None):
        return self.block2(self.block1(x, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      in_channels=self.in_channels)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Identity(_Op):
    def call(self, x, training=None):
        return x


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Zero(_Op):
    """The 'none' op: zeros, spatially halved on stride 2."""

    def call(self, x, training=None):
        if self.stride == 2:
            x = x[:, ::2, ::2, :]
        return tf.zeros_like(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FactorizedReduce(_Op):
    """ReLU, two 1x1 stride-2 convs on offset grids, concat, BN.

    The second conv reads ``x[:, 1:, 1:]``; the input is first padded by one
    row and column at the bottom/right so odd spatial sizes give ceil(H/2)
    like every other stride-2 op (for even sizes this is the reference).
    """

    def __init__(self, filters: int, **kwargs):
        kwargs.setdefault("stride", 2)
        super().__init__(**kwargs)
        if filters % 2:
            raise ValueError(f"FactorizedReduce needs an even filter count, got {filters}")
        self.filters = filters
        self.conv_1 = keras.layers.Conv2D(filters // 2, 1, strides=2, use_bias=False)
        self.conv_2 = keras.layers.Conv2D(filters // 2, 1, strides=2, use_bias=False)
        self.bn = batch_norm(self.affine, self.sync_bn)

    def call(self, x, training=None):
        x, shifted = self.conv_inputs(x)
        out = tf.concat([self.conv_1(x), self.conv_2(shifted)], axis=-1)
        return self.bn(out, training=training)

    @staticmethod
    def conv_inputs(x):
        """(ReLU(x), the same shifted by one row and column): the two convs' inputs."""
        x = tf.nn.relu(x)
        return x, tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Pool(_Op):
    """3x3 max or average pooling with padding 1 (average excludes padding).

    With ``bn=True`` a BatchNorm without affine parameters follows, as the
    reference adds inside MixedOp.
    """

    def __init__(self, kind: str, bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("max", "avg"):
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")
        self.kind = kind
        self.bn_after = bn
        self.bn = batch_norm(False, self.sync_bn) if bn else None

    def call(self, x, training=None):
        out = self.pooled(x)
        if self.bn is not None:
            out = self.bn(out, training=training)
        return out

    def pooled(self, x):
        """The pooling alone (without the BatchNorm that may follow)."""
        if self.stride == 1:
            # SAME padding at stride 1 is symmetric; TF's SAME average
            # pooling already excludes the padded cells.
            pool = tf.nn.max_pool2d if self.kind == "max" else tf.nn.avg_pool2d
            out = pool(x, 3, 1, "SAME")
        elif self.kind == "max":
            low = tf.constant(x.dtype.min, dtype=x.dtype)
            padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=low)
            out = tf.nn.max_pool2d(padded, 3, 2, "VALID")
        else:
            ones = tf.ones_like(x[:1, :, :, :1])
            counts = tf.nn.avg_pool2d(_pad(ones, 1), 3, 2, "VALID")
            out = tf.nn.avg_pool2d(_pad(x, 1), 3, 2, "VALID") / counts
        return out

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, bn=self.bn_after)
        return config


def _make(name: str, filters: int, stride: int, affine: bool, sync_bn: bool,
          pool_bn: bool):
    common = dict(stride=stride, affine=affine, sync_bn=sync_bn)
    if name == "none":
        return Zero(**common)
    if name == "max_pool_3x3":
        return Pool("max", bn=pool_bn, **common)
    if name == "avg_pool_3x3":
        return Pool("avg", bn=pool_bn, **common)
    if name == "skip_connect":
        return Identity(**common) if stride == 1 else FactorizedReduce(filters, **common)
    if name in ("sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7"):
        return SepConv(filters, int(name[-1]), **common)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return DilConv(filters, int(name[-1]), 2, **common)
    if name == "conv_7x1_1x7":
        return Conv7x1x1x7(filters, **common)
    raise UserInputError(f"unknown op {name!r}; expected one of {sorted(OPS)}")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv7x1x1x7(_Op):
    """ReLU, conv 1x7, conv 7x1, BN (listed by the reference, unused by DARTS)."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv_a = keras.layers.Conv2D(filters, (1, 7), strides=(1, self.stride),
                                          padding="same", use_bias=False)
        self.conv_b = keras.layers.Conv2D(filters, (7, 1), strides=(self.stride, 1),
                                          padding="same", use_bias=False)
        self.bn = batch_norm(self.affine, self.sync_bn)

    def call(self, x, training=None):
        return self.bn(self.conv_b(self.conv_a(tf.nn.relu(x))), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


#: Every op name the registry can build.
OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
       "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5",
       "conv_7x1_1x7")


def make_op(name: str, filters: int, stride: int, affine: bool,
            sync_bn: bool = False, pool_bn: bool = False) -> keras.layers.Layer:
    """Builds the op called ``name`` with ``filters`` output channels.

    Args:
      name: an op name from :data:`OPS`.
      filters: output channels (equal to input channels except on stride 2
        where ``skip_connect`` becomes a FactorizedReduce).
      stride: 1 or 2.
      affine: whether BatchNorm layers learn gamma and beta.
      sync_bn: synchronise BatchNorm statistics across replicas.
      pool_bn: follow pooling by a non-affine BatchNorm (search MixedOp).
    """
    return _make(name, filters, stride, affine, sync_bn, pool_bn)


def cell_preprocessing(filters: int, reduction_prev: bool, affine: bool,
                       sync_bn: bool = False) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """The two input preprocessors of a cell (reference ``Cell.__init__``).

    s0 goes through FactorizedReduce when the previous cell reduced (s0 is then
    twice s1's size), else ReLU-Conv1x1-BN; s1 always through ReLU-Conv1x1-BN.
    """
    common = dict(affine=affine, sync_bn=sync_bn)
    first = (FactorizedReduce(filters, **common) if reduction_prev
             else ReLUConvBN(filters, 1, **common))
    return first, ReLUConvBN(filters, 1, **common)
