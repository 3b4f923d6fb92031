"""The DARTS CNN supernet: MixedOp, SearchCell and SearchNetwork (Keras layers).

Matches the reference ``model_search.py``: a 3x3 conv stem to
``stem_multiplier * C`` channels with an affine BN; ``layers`` cells with
reductions at ``layers // 3`` and ``2 * layers // 3`` (channels doubled);
cell inputs preprocessed by ReLU-Conv1x1-BN, or FactorizedReduce when the
previous cell reduced; BatchNorm without affine parameters inside cells;
global average pooling and a linear classifier.

Architecture weights (``alphas_normal``, ``alphas_reduce``, each
``(14, 8)`` for 4 steps) are trainable variables of the model, kept in
float32 and apart from the network weights: ``arch_variables`` and
``weight_variables`` partition ``trainable_variables``.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from autonet_tf.configs import TRACE_SHARING_MODES
from autonet_tf.models.shared_traces import SharedTraces, sharing_off
from autonet_tf.search_space import genotypes
from autonet_tf.models.edge_batching import mix_edges
from autonet_tf.search_space.ops import batch_norm, cell_preprocessing, channel_shuffle, make_op
from autonet_tf.tracking import CheckpointCollections

_PACKAGE = "autonet_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MixedOp(CheckpointCollections, keras.layers.Layer):
    """Softmax-weighted sum of every candidate op on one edge.

    'none' contributes exactly zero, so it is not computed; its weight still
    takes part in the softmax, so gradients are those of the full mixture.
    Pooling ops are followed by a non-affine BatchNorm, as in the reference.
    """

    def __init__(self, filters: int, stride: int,
                 primitives: Sequence[str] = genotypes.PRIMITIVES,
                 sync_bn: bool = False, partial_channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        if filters % partial_channels:
            raise ValueError(f"filters ({filters}) must be divisible by partial_channels "
                             f"({partial_channels})")
        self.filters = filters
        self.stride = stride
        self.primitives = tuple(primitives)
        self.sync_bn = sync_bn
        self.partial_channels = partial_channels
        self.op_indices = [k for k, p in enumerate(self.primitives) if p != "none"]
        self.candidate_ops = [
            make_op(self.primitives[k], filters // partial_channels, stride, affine=False,
                    sync_bn=sync_bn, pool_bn=True)
            for k in self.op_indices
        ]

    def build(self, *shapes):
        self.built = True  # sub-layers build lazily; see ops._Op.build

    def call(self, x, weights, training=None):
        traces = self.__dict__.get("_shared_traces")
        if traces is None or not self.__dict__.get("_variables_created") or sharing_off():
            out = self._mix(x, weights, training)
            self.__dict__["_variables_created"] = True
            return out
        return traces.call(self, x, weights, training)

    def _mix(self, x, weights, training=None):
        k = self.partial_channels
        if k == 1:
            return self._weighted_sum(x, weights, training)
        # PC-DARTS: 1/k of the channels go through the ops, the rest bypass
        # them (max-pooled on a reduction edge); a channel shuffle then mixes
        # the two parts for the next edge.
        part = x.shape[-1] // k
        mixed = self._weighted_sum(x[..., :part], weights, training)
        rest = x[..., part:]
        if self.stride == 2:
            rest = tf.nn.max_pool2d(rest, 2, 2, "SAME")  # the ops' output size
        out = tf.concat([mixed, rest], axis=-1)
        return channel_shuffle(out, k)

    def _weighted_sum(self, x, weights, training):
        weights = tf.cast(weights, x.dtype)
        total = None
        for k, op in zip(self.op_indices, self.candidate_ops):
            term = weights[k] * op(x, training=training)
            total = term if total is None else total + term
        if total is None:  # only 'none' on this edge
            return make_op("none", x.shape[-1], self.stride, False)(x)
        return total

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, stride=self.stride,
                      primitives=list(self.primitives), sync_bn=self.sync_bn,
                      partial_channels=self.partial_channels)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SearchCell(CheckpointCollections, keras.layers.Layer):
    """A DARTS search cell: ``steps`` nodes, each a sum of MixedOps over all predecessors."""

    def __init__(self, filters: int, reduction: bool, reduction_prev: bool,
                 steps: int = genotypes.DEFAULT_STEPS, multiplier: int = 4,
                 primitives: Sequence[str] = genotypes.PRIMITIVES,
                 sync_bn: bool = False, partial_channels: int = 1,
                 batched_edges: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.partial_channels = partial_channels
        self.batched_edges = batched_edges
        self.reduction = reduction
        self.reduction_prev = reduction_prev
        self.steps = steps
        self.multiplier = multiplier
        self.primitives = tuple(primitives)
        self.sync_bn = sync_bn
        self.preprocess0, self.preprocess1 = cell_preprocessing(filters, reduction_prev,
                                                                affine=False, sync_bn=sync_bn)
        self.edges = []
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(filters, stride, self.primitives, sync_bn,
                                          partial_channels))

    def build(self, *shapes):
        self.built = True  # sub-layers build lazily; see ops._Op.build

    def call(self, s0, s1, weights, edge_weights=None, training=None):
        """``edge_weights``: PC-DARTS' per-edge weights (normalised betas), or None."""
        states = [self.preprocess0(s0, training=training),
                  self.preprocess1(s1, training=training)]
        if self.batched_edges and self.__dict__.get("_edges_built") and not sharing_off():
            return self._batched_nodes(states, weights, edge_weights, training)
        out = self._edge_by_edge(states, weights, edge_weights, training)
        self.__dict__["_edges_built"] = True  # the edges' variables exist now
        return out

    def _batched_nodes(self, states, weights, edge_weights, training):
        """The nodes with the edges of each state run together (models/edge_batching)."""
        terms = [[] for _ in range(self.steps)]
        first_edge = [rows.start for rows in genotypes.node_slices(self.steps)]

        def feed(j):  # state j is ready: its edges to every later node, at once
            nodes = [i for i in range(self.steps) if j < 2 + i]
            if not nodes:
                return
            index = [first_edge[i] + j for i in nodes]
            mixed = mix_edges([self.edges[e] for e in index], states[j],
                              tf.gather(weights, index), training)
            if edge_weights is not None:
                mixed = tf.cast(tf.gather(edge_weights, index), mixed.dtype)[:, None] * mixed
            for i, term in zip(nodes, tf.unstack(mixed, axis=-2)):
                terms[i].append(term)

        feed(0)
        feed(1)
        for i in range(self.steps):
            states.append(tf.add_n(terms[i]))
            feed(2 + i)
        return tf.concat(states[-self.multiplier:], axis=-1)

    def _edge_by_edge(self, states, weights, edge_weights, training):
        offset = 0
        for _ in range(self.steps):
            node = None
            for j, h in enumerate(states):
                term = self.edges[offset + j](h, weights[offset + j], training=training)
                if edge_weights is not None:
                    term = tf.cast(edge_weights[offset + j], term.dtype) * term
                node = term if node is None else node + term
            offset += len(states)
            states.append(node)
        return tf.concat(states[-self.multiplier:], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, reduction=self.reduction,
                      reduction_prev=self.reduction_prev, steps=self.steps,
                      multiplier=self.multiplier, primitives=list(self.primitives),
                      sync_bn=self.sync_bn, partial_channels=self.partial_channels,
                      batched_edges=self.batched_edges)
        return config


#: 'auto' traces the edges 'inline' on images at least this many pixels high and wide
INLINE_FROM_PIXELS = 16


def pick_trace_sharing(choice: str, input_shape, sync_bn: bool, partial_channels: int) -> str:
    """The edge tracing mode for ``choice`` ('auto' or a mode of TRACE_SHARING_MODES).

    'auto': 'inline' for DARTS on images of at least :data:`INLINE_FROM_PIXELS`
    pixels, else 'batched'. Measured on 2 CPU cores: on 32x32 CIFAR-10 batches
    inline steps are faster (1.80 against 2.02 s at batch 16, 6.54 against
    8.50 s at batch 64, 8 cells, C=16), on 8x8 digits batched ones are (0.28
    against 0.34 s, and a 5 s shorter first step). Synchronised BatchNorm
    (several replicas) and PC-DARTS keep 'batched' (inline edges become 'off'
    under synchronised BatchNorm; PC-DARTS was not measured).
    """
    if choice != "auto":
        return choice
    small = min(input_shape[:2]) < INLINE_FROM_PIXELS
    return "batched" if small or sync_bn or partial_channels > 1 else "inline"


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Indices of reduction cells: layers // 3 and 2 * layers // 3 (reference)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SearchNetwork(CheckpointCollections, keras.Model):
    """The DARTS CNN supernet with its architecture weights.

    Args:
      num_classes: classifier outputs.
      init_channels: C, channels of the first cells (DARTS search: 16).
      layers: number of cells (DARTS search: 8).
      steps: intermediate nodes per cell (4).
      multiplier: nodes concatenated into the cell output (4).
      stem_multiplier: stem channels = stem_multiplier * C (3).
      primitives: candidate op names, 'none' first as in the reference.
      sync_bn: synchronise BatchNorm statistics across replicas, so that N
        replicas compute what one device computes on the global batch.
      alpha_init_scale: alphas start as scale * N(0, 1) (reference: 1e-3).
      seed: seed of the alpha initialiser.
      trace_sharing: 'batched' (default) runs the edges that read one state
        together, one op per candidate (:mod:`~autonet_tf.models.edge_batching`);
        'inline' traces each distinct edge once and calls it with every
        edge's weights, inlined into the step graph; 'call' keeps the calls
        (shortest first step, slower steps); 'off' traces every edge
        (:mod:`~autonet_tf.models.shared_traces`). Same results either way.
        'inline' and 'call' become 'off' under synchronised BatchNorm (its
        cross-replica all-reduce cannot run in a called function).
    """

    def __init__(self, num_classes: int, init_channels: int = 16, layers: int = 8,
                 steps: int = genotypes.DEFAULT_STEPS, multiplier: int = 4,
                 stem_multiplier: int = 3,
                 primitives: Sequence[str] = genotypes.PRIMITIVES,
                 sync_bn: bool = False, alpha_init_scale: float = 1e-3,
                 seed: int | None = None, trace_sharing: str = "batched",
                 partial_channels: int = 1, edge_normalization: bool = False, **kwargs):
        super().__init__(**kwargs)
        if "none" not in primitives:
            raise ValueError(f"primitives must contain 'none', got {list(primitives)}")
        self.num_classes = num_classes
        self.init_channels = init_channels
        self.num_layers = layers
        self.steps = steps
        self.multiplier = multiplier
        self.stem_multiplier = stem_multiplier
        self.primitives = tuple(primitives)
        self.sync_bn = sync_bn
        self.alpha_init_scale = alpha_init_scale
        self.seed = seed
        self.partial_channels = partial_channels
        self.edge_normalization = edge_normalization

        self.stem_conv = keras.layers.Conv2D(stem_multiplier * init_channels, 3,
                                             padding="same", use_bias=False)
        self.stem_bn = batch_norm(True, sync_bn)
        if trace_sharing not in TRACE_SHARING_MODES:
            raise ValueError(f"trace_sharing must be one of {TRACE_SHARING_MODES}, "
                             f"got {trace_sharing!r}")
        # Shared edge functions cannot hold the cross-replica all-reduce of
        # synchronised BatchNorm; batched edges can.
        self.trace_sharing = ("off" if sync_bn and trace_sharing in ("inline", "call")
                              else trace_sharing)
        self.cells = []
        channels = init_channels
        reduction_prev = False
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                channels *= 2
            self.cells.append(SearchCell(channels, reduction, reduction_prev, steps,
                                         multiplier, self.primitives, sync_bn,
                                         partial_channels,
                                         batched_edges=self.trace_sharing == "batched",
                                         name=f"cell_{i}"))
            reduction_prev = reduction
        if self.trace_sharing in ("inline", "call"):
            # Not tracked by Keras: a cache of traced functions, not a layer.
            self.__dict__["shared_traces"] = SharedTraces(inline=self.trace_sharing == "inline")
            for cell in self.cells:
                for edge in cell.edges:
                    edge.__dict__["_shared_traces"] = self.shared_traces
        self.global_pooling = keras.layers.GlobalAveragePooling2D()
        self.classifier = keras.layers.Dense(num_classes, name="classifier")
        shape = (genotypes.num_edges(steps), len(self.primitives))
        def init(offset):
            return keras.initializers.RandomNormal(
                stddev=alpha_init_scale, seed=None if seed is None else seed + offset)

        # Variable dtype: float32 (also under mixed precision), or floatx.
        self.alphas_normal = self.add_weight(shape=shape, initializer=init(0),
                                             autocast=False,
                                             name="alphas_normal")
        self.alphas_reduce = self.add_weight(shape=shape, initializer=init(1),
                                             autocast=False,
                                             name="alphas_reduce")
        self.betas = []
        if edge_normalization:  # PC-DARTS: one weight per edge, softmaxed per node
            self.betas_normal = self.add_weight(shape=shape[:1], initializer=init(2),
                                                autocast=False, name="betas_normal")
            self.betas_reduce = self.add_weight(shape=shape[:1], initializer=init(3),
                                                autocast=False, name="betas_reduce")
            self.betas = [self.betas_normal, self.betas_reduce]

    @property
    def arch_variables(self) -> list:
        """The architecture weights (alphas, and the PC-DARTS betas)."""
        return [self.alphas_normal, self.alphas_reduce] + list(self.betas)

    def edge_weights(self):
        """PC-DARTS: the betas softmaxed per node, (normal, reduce); (None, None) without."""
        if not self.betas:
            return None, None
        return tuple(tf.concat([tf.nn.softmax(b[rows]) for rows in
                                genotypes.node_slices(self.steps)], 0) for b in self.betas)

    @property
    def weight_variables(self) -> list:
        """Every trainable variable that is not an architecture weight."""
        arch = {id(v) for v in self.arch_variables}
        return [v for v in self.trainable_variables if id(v) not in arch]

    def arch_weights(self):
        """Softmaxed alphas (float32): (normal, reduce)."""
        return (tf.nn.softmax(self.alphas_normal, axis=-1),
                tf.nn.softmax(self.alphas_reduce, axis=-1))

    def build(self, *shapes):
        self.built = True  # sub-layers build lazily; see ops._Op.build

    def call(self, x, training=None):
        normal, reduce = self.arch_weights()
        edges_normal, edges_reduce = self.edge_weights()
        s0 = s1 = self.stem_bn(self.stem_conv(x), training=training)
        for cell in self.cells:
            weights = reduce if cell.reduction else normal
            edges = edges_reduce if cell.reduction else edges_normal
            s0, s1 = s1, cell(s0, s1, weights, edges, training=training)
        logits = self.classifier(self.global_pooling(s1))
        if logits.dtype in (tf.float16, tf.bfloat16):  # losses in float32
            logits = tf.cast(logits, tf.float32)
        return logits

    def genotype(self, max_skip: int | None = None) -> genotypes.Genotype:
        """The discrete cells implied by the current alphas (see genotypes.derive)."""
        betas = [np.asarray(b) for b in self.betas] or [None, None]
        return genotypes.derive(np.asarray(self.alphas_normal),
                                np.asarray(self.alphas_reduce),
                                self.steps, self.multiplier, self.primitives, max_skip,
                                *betas)

    def get_config(self):
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "init_channels": self.init_channels,
            "layers": self.num_layers,
            "steps": self.steps,
            "multiplier": self.multiplier,
            "stem_multiplier": self.stem_multiplier,
            "primitives": list(self.primitives),
            "sync_bn": self.sync_bn,
            "alpha_init_scale": self.alpha_init_scale,
            "seed": self.seed,
            "trace_sharing": self.trace_sharing,
            "partial_channels": self.partial_channels,
            "edge_normalization": self.edge_normalization,
        }
