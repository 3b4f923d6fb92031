"""Networks built from a genotype, for training from scratch (reference ``model.py``).

* :class:`Cell`: one discrete cell; every intermediate node sums two ops of
  the genotype; drop path is applied (in training) to every op that is not
  an identity.
* :class:`NetworkCIFAR`: 3x3 conv stem to 3C, ``layers`` cells with
  reductions at ``layers // 3`` and ``2 * layers // 3``, an auxiliary head
  after cell ``2 * layers // 3`` (training only), global average pooling and
  a linear classifier. DARTS evaluation: C=36, 20 cells.
* :class:`NetworkImageNet`: the two-stage stem (three stride-2 3x3 convs, so
  224x224 inputs reach the cells at 28x28), otherwise the same; DARTS
  mobile setting: C=48, 14 cells.

BatchNorm is affine here. The auxiliary heads assume the reference's 8x8
(CIFAR) and 7x7 (ImageNet) feature maps; on smaller maps (the 8x8 digits)
their pooling window shrinks to fit. In training with ``auxiliary=True`` the
model returns ``(logits, aux_logits)``, otherwise ``logits``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from autonet_tf.models.cnn_search import reduction_layers
from autonet_tf.search_space import genotypes
from autonet_tf.search_space.ops import Identity, _pad, batch_norm, cell_preprocessing, make_op
from autonet_tf.tracking import CheckpointCollections

_PACKAGE = "autonet_tf"


def drop_path(x, drop_prob, seed=None):
    """Zeroes whole examples with probability ``drop_prob`` and rescales the rest.

    With ``seed`` (shape [2]) the mask is stateless, so a resumed run draws
    the masks an uninterrupted one would; without it, TensorFlow's global
    random state is used.
    """
    keep = 1.0 - tf.cast(drop_prob, x.dtype)
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
    if seed is None:
        noise = tf.random.uniform(shape, dtype=x.dtype)
    else:
        noise = tf.cast(tf.random.stateless_uniform(shape, seed), x.dtype)
    mask = tf.floor(keep + noise)
    return x / keep * mask


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Cell(CheckpointCollections, keras.layers.Layer):
    """A discrete DARTS cell built from the ``normal`` or ``reduce`` half of a genotype."""

    def __init__(self, genotype: genotypes.Genotype, filters: int, reduction: bool,
                 reduction_prev: bool, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.genotype = genotype
        self.filters = filters
        self.reduction = reduction
        self.reduction_prev = reduction_prev
        self.sync_bn = sync_bn
        self.preprocess0, self.preprocess1 = cell_preprocessing(filters, reduction_prev,
                                                                affine=True, sync_bn=sync_bn)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.indices = tuple(index for _, index in edges)
        self.ops = [make_op(op, filters, 2 if reduction and index < 2 else 1, affine=True,
                            sync_bn=sync_bn)
                    for op, index in edges]
        self.steps = len(edges) // 2

    def build(self, *shapes):
        self.built = True  # sub-layers build lazily; see ops._Op.build

    def call(self, s0, s1, drop_prob=0.0, training=None, seed=None):
        states = [self.preprocess0(s0, training=training),
                  self.preprocess1(s1, training=training)]
        for i in range(self.steps):
            node = None
            for k in (2 * i, 2 * i + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]], training=training)
                if training and not isinstance(op, Identity):
                    op_seed = (None if seed is None
                               else tf.random.experimental.stateless_fold_in(seed, k))
                    h = tf.cond(drop_prob > 0,
                                lambda h=h, s=op_seed: drop_path(h, drop_prob, s),
                                lambda h=h: h)
                node = h if node is None else node + h
            states.append(node)
        return tf.concat([states[i] for i in self.concat], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(genotype=self.genotype.to_dict(), filters=self.filters,
                      reduction=self.reduction, reduction_prev=self.reduction_prev,
                      sync_bn=self.sync_bn)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["genotype"] = genotypes.Genotype.from_dict(config["genotype"])
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AuxiliaryHead(keras.layers.Layer):
    """ReLU, 5x5 average pool, 1x1 conv 128, BN, ReLU, 2x2 conv 768, [BN], ReLU, linear.

    CIFAR (reference ``AuxiliaryHeadCIFAR``): pool stride 3 on the 8x8 map,
    BN after both convs. ImageNet (``AuxiliaryHeadImageNet``): pool stride 2
    on the 7x7 map, no BN after the second conv (kept as in the reference,
    whose published results were produced without it). Smaller maps shrink
    the pool window and the second conv to fit.
    """

    def __init__(self, num_classes: int, stride: int = 3, second_bn: bool = True,
                 sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.stride = stride
        self.second_bn = second_bn
        self.sync_bn = sync_bn
        self.conv1 = keras.layers.Conv2D(128, 1, use_bias=False)
        self.bn1 = batch_norm(True, sync_bn)
        self.bn2 = batch_norm(True, sync_bn) if second_bn else None
        self.classifier = keras.layers.Dense(num_classes, name="classifier")
        self.conv2 = None

    def build(self, input_shape):
        size = min(int(input_shape[1]), int(input_shape[2]))
        self.window = min(5, size)
        pooled = (size - self.window) // self.stride + 1
        self.conv2 = keras.layers.Conv2D(768, min(2, pooled), use_bias=False)
        self.built = True

    def call(self, x, training=None):
        x = tf.nn.relu(x)
        x = tf.nn.avg_pool2d(x, self.window, self.stride, "VALID")
        x = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        x = self.conv2(x)
        if self.bn2 is not None:
            x = self.bn2(x, training=training)
        x = tf.reduce_mean(tf.nn.relu(x), axis=[1, 2])  # 1x1 at the reference sizes
        return self.classifier(x)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, stride=self.stride,
                      second_bn=self.second_bn, sync_bn=self.sync_bn)
        return config


class _Network(CheckpointCollections, keras.Model):
    """Cells, auxiliary head, classifier and the drop-path probability."""

    def __init__(self, genotype: genotypes.Genotype, num_classes: int, init_channels: int,
                 layers: int, auxiliary: bool, sync_bn: bool, reduction_prev: bool,
                 aux_stride: int, aux_second_bn: bool, **kwargs):
        super().__init__(**kwargs)
        if isinstance(genotype, dict):
            genotype = genotypes.Genotype.from_dict(genotype)
        self.genotype = genotype
        self.num_classes = num_classes
        self.init_channels = init_channels
        self.num_layers = layers
        self.auxiliary = auxiliary
        self.sync_bn = sync_bn
        self.aux_position = 2 * layers // 3
        self.cells = []
        channels = init_channels
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                channels *= 2
            self.cells.append(Cell(genotype, channels, reduction, reduction_prev, sync_bn,
                                   name=f"cell_{i}"))
            reduction_prev = reduction
        self.auxiliary_head = (AuxiliaryHead(num_classes, aux_stride, aux_second_bn, sync_bn,
                                             name="auxiliary_head") if auxiliary else None)
        self.global_pooling = keras.layers.GlobalAveragePooling2D()
        self.classifier = keras.layers.Dense(num_classes, name="classifier")
        # Set once per epoch by the trainer: drop_path * epoch / epochs.
        self.drop_path_prob = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                              autocast=False, name="drop_path_prob")

    def build(self, *shapes):
        self.built = True  # sub-layers build lazily; see ops._Op.build

    def stem(self, x, training=None):
        raise NotImplementedError

    def call(self, x, training=None, seed=None):
        """``seed`` (int64 [2], optional) makes the drop-path masks stateless."""
        s0, s1 = self.stem(x, training=training)
        drop_prob = tf.convert_to_tensor(self.drop_path_prob)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            cell_seed = None if seed is None else tf.random.experimental.stateless_fold_in(seed, i)
            s0, s1 = s1, cell(s0, s1, drop_prob, training=training, seed=cell_seed)
            if i == self.aux_position and self.auxiliary_head is not None:
                if training:
                    aux_logits = self.auxiliary_head(s1, training=training)
                elif not self.auxiliary_head.built:  # create its variables with the rest
                    self.auxiliary_head(s1, training=False)
        logits = self.classifier(self.global_pooling(s1))
        if logits.dtype in (tf.float16, tf.bfloat16):  # losses in float32
            logits = tf.cast(logits, tf.float32)
            aux_logits = None if aux_logits is None else tf.cast(aux_logits, tf.float32)
        if aux_logits is not None:
            return logits, aux_logits
        return logits

    def count_parameters(self) -> int:
        """Trainable parameters without the auxiliary head (the published figure)."""
        aux = set()
        if self.auxiliary_head is not None:
            aux = {id(v) for v in self.auxiliary_head.trainable_variables}
        return int(sum(int(tf.size(v)) for v in self.trainable_variables if id(v) not in aux))

    def get_config(self):
        return {"name": self.name, "genotype": self.genotype.to_dict(),
                "num_classes": self.num_classes, "init_channels": self.init_channels,
                "layers": self.num_layers, "auxiliary": self.auxiliary,
                "sync_bn": self.sync_bn}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NetworkCIFAR(_Network):
    """The DARTS CIFAR evaluation network (defaults: C=36, 20 cells, auxiliary head)."""

    def __init__(self, genotype, num_classes: int, init_channels: int = 36, layers: int = 20,
                 auxiliary: bool = True, sync_bn: bool = False, stem_multiplier: int = 3,
                 **kwargs):
        super().__init__(genotype, num_classes, init_channels, layers, auxiliary, sync_bn,
                         reduction_prev=False, aux_stride=3, aux_second_bn=True, **kwargs)
        self.stem_multiplier = stem_multiplier
        self.stem_conv = keras.layers.Conv2D(stem_multiplier * init_channels, 3,
                                             padding="same", use_bias=False)
        self.stem_bn = batch_norm(True, sync_bn)

    def stem(self, x, training=None):
        s = self.stem_bn(self.stem_conv(x), training=training)
        return s, s

    def get_config(self):
        return {**super().get_config(), "stem_multiplier": self.stem_multiplier}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NetworkImageNet(_Network):
    """The DARTS ImageNet network for 224x224 inputs (defaults: C=48, 14 cells)."""

    def __init__(self, genotype, num_classes: int, init_channels: int = 48, layers: int = 14,
                 auxiliary: bool = True, sync_bn: bool = False, **kwargs):
        super().__init__(genotype, num_classes, init_channels, layers, auxiliary, sync_bn,
                         reduction_prev=True, aux_stride=2, aux_second_bn=False, **kwargs)
        c = init_channels
        conv = lambda filters: keras.layers.Conv2D(filters, 3, strides=2, use_bias=False)  # noqa: E731
        self.stem0_conv1 = conv(c // 2)
        self.stem0_bn1 = batch_norm(True, sync_bn)
        self.stem0_conv2 = conv(c)
        self.stem0_bn2 = batch_norm(True, sync_bn)
        self.stem1_conv = conv(c)
        self.stem1_bn = batch_norm(True, sync_bn)

    def stem(self, x, training=None):
        # Stride-2 3x3 convs with padding 1 on both sides, as PyTorch pads.
        s0 = tf.nn.relu(self.stem0_bn1(self.stem0_conv1(_pad(x, 1)), training=training))
        s0 = self.stem0_bn2(self.stem0_conv2(_pad(s0, 1)), training=training)
        s1 = self.stem1_bn(self.stem1_conv(_pad(tf.nn.relu(s0), 1)), training=training)
        return s0, s1


NETWORKS = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}


def build_network(kind: str, genotype, num_classes: int, input_shape, **kwargs) -> _Network:
    """Creates and builds the ``kind`` ('cifar' or 'imagenet') network for ``input_shape``."""
    model = NETWORKS[kind](genotype, num_classes, **kwargs)
    model(tf.zeros((1,) + tuple(input_shape)), training=False)
    return model
