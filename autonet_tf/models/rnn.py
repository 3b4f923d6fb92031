"""DARTS recurrent cells and the word-level language model around them.

Reference: DARTS ``rnn/model.py`` (``DARTSCell``, ``RNNModel``) and
``rnn/model_search.py`` (``DARTSCellSearch``). One time step of a cell:

* initial state ``s0 = h + sigmoid(c0) * (tanh(g0) - h)`` with
  ``[c0, g0] = [x * x_mask, h * h_mask] @ W0``;
* node ``i`` from predecessor ``s_j``: ``[c, g] = (s_j * h_mask) @ W_i``,
  ``s_i = s_j + sigmoid(c) * (f(g) - s_j)`` (a highway-gated activation ``f``
  among tanh, relu, sigmoid, identity);
* output (the new hidden state) = mean of the states in ``concat``.

The search cell feeds every node from every predecessor and every
activation, weighted by ``softmax(alpha)`` (36 edges x 5 ops; 'none'
contributes zero), with a BatchNorm without affine parameters on ``s0`` and
on every node, as the reference. Its moving statistics are updated once per
call from the moments averaged over the time steps and nodes of that call
(the reference updates them after every node of every time step).

Randomness is explicit: dropout masks are model INPUTS made by
:meth:`RNNLanguageModel.dropout_masks` from a seed, so every pass of one
architecture step (weight, virtual, finite-difference) sees the same masks,
and a resumed run draws the same masks. Masks are drawn for the global batch
and sliced per replica, so the replica count does not change them.

The time loop is a ``tf.scan`` with an unknown number of steps, so windows of
any length run through one traced graph.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from autonet_tf.search_space import rnn_genotypes
from autonet_tf.search_space.rnn_genotypes import RNN_PRIMITIVES, RecurrentGenotype
from autonet_tf.tracking import CheckpointCollections

INIT_RANGE = 0.04  # reference model.py INITRANGE (cell weights)
EMBED_RANGE = 0.1  # reference RNNModel.init_weights (embedding)
BN_EPSILON = 1e-5  # torch.nn.BatchNorm1d defaults
BN_MOMENTUM = 0.1

_ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "sigmoid": tf.sigmoid,
                "identity": lambda x: x}

MASK_NAMES = ("embedding", "input", "x", "h", "output")


class _RecurrentCellBase(CheckpointCollections, keras.layers.Layer):
    """Weights and the shared initial-state computation of both cells."""

    def __init__(self, ninp: int, nhid: int, steps: int, **kwargs):
        super().__init__(**kwargs)
        self.ninp, self.nhid, self.steps = ninp, nhid, steps
        init = keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)
        self.w0 = self.add_weight(shape=(ninp + nhid, 2 * nhid), initializer=init, name="w0")
        self.ws = [self.add_weight(shape=(nhid, 2 * nhid), initializer=init, name=f"w{i + 1}")
                   for i in range(steps)]
        self.built = True

    def call(self, inputs, hidden, x_mask=None, h_mask=None, probs=None, training=False):
        """inputs (B, T, ninp), hidden (B, nhid) -> (outputs (B, T, nhid), last hidden)."""
        # Explicit casts: stateless_call runs call() outside Keras' autocast scope.
        dtype = self.compute_dtype
        w0 = tf.cast(self.w0.value, dtype)
        ws = [tf.cast(w.value, dtype) for w in self.ws]
        inputs, hidden = tf.cast(inputs, dtype), tf.cast(hidden, dtype)
        w0x, w0h = w0[:self.ninp], w0[self.ninp:]
        if training and x_mask is not None:
            inputs = inputs * x_mask[:, None, :]
        # The input half of W0 for all time steps at once (one large matmul).
        x_proj = tf.transpose(tf.einsum("btd,dk->btk", inputs, w0x), [1, 0, 2])
        use_h_mask = training and h_mask is not None
        moments0 = self.initial_moments()

        def step(carry, xp):
            h = carry[0]
            hm = h * h_mask if use_h_mask else h
            c0, g0 = tf.split(xp + tf.matmul(hm, w0h), 2, axis=-1)
            s0 = h + tf.sigmoid(c0) * (tf.tanh(g0) - h)
            out, moments = self.nodes(s0, ws, h_mask if use_h_mask else None, probs, training)
            return (out,) + tuple(m + d for m, d in zip(carry[1:], moments))

        scanned = tf.scan(step, x_proj, initializer=(hidden,) + moments0)
        outputs = tf.transpose(scanned[0], [1, 0, 2])
        if training and moments0:
            self.update_moments([m[-1] for m in scanned[1:]], tf.shape(x_proj)[0])
        return outputs, scanned[0][-1]

    def initial_moments(self) -> tuple:
        return ()

    def update_moments(self, sums, time_steps) -> None:
        pass

    def nodes(self, s0, ws, h_mask, probs, training):
        raise NotImplementedError


class RecurrentCell(_RecurrentCellBase):
    """The discrete DARTS cell of a :class:`RecurrentGenotype` (reference ``DARTSCell``)."""

    def __init__(self, ninp: int, nhid: int, genotype: RecurrentGenotype, **kwargs):
        self.genotype = genotype
        super().__init__(ninp, nhid, genotype.steps, **kwargs)

    def nodes(self, s0, ws, h_mask, probs, training):
        states = [s0]
        for (name, pred), w in zip(self.genotype.recurrent, ws):
            prev = states[pred]
            c, g = tf.split(tf.matmul(prev * h_mask if h_mask is not None else prev, w), 2, -1)
            states.append(prev + tf.sigmoid(c) * (_ACTIVATIONS[name](g) - prev))
        return tf.add_n([states[i] for i in self.genotype.concat]) / len(self.genotype.concat), ()


class RecurrentSearchCell(_RecurrentCellBase):
    """The DARTS recurrent search cell (reference ``DARTSCellSearch``).

    ``alphas`` are owned by the model and handed to ``call`` softmaxed, as
    ``probs`` of shape (edges, ops).
    """

    def __init__(self, ninp: int, nhid: int, steps: int = rnn_genotypes.RNN_STEPS,
                 primitives: Sequence[str] = RNN_PRIMITIVES, **kwargs):
        super().__init__(ninp, nhid, steps, **kwargs)
        self.primitives = tuple(primitives)
        unknown = [p for p in self.primitives if p != "none" and p not in _ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown recurrent primitives {unknown}")
        self.moving_mean = self.add_weight(shape=(nhid,), initializer="zeros",
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=(nhid,), initializer="ones",
                                               trainable=False, name="moving_variance")

    def initial_moments(self) -> tuple:
        zeros = tf.zeros((self.nhid,), self.moving_mean.dtype)
        return (zeros, zeros)

    def update_moments(self, sums, time_steps) -> None:
        count = tf.cast(time_steps * (self.steps + 1), self.moving_mean.dtype)
        for var, total in zip((self.moving_mean, self.moving_variance), sums):
            var.assign((1 - BN_MOMENTUM) * var.value + BN_MOMENTUM * total / count)

    def _norm(self, s, training, moments: list):
        """BatchNorm without affine, in the variables' dtype (float32 under mixed precision)."""
        dtype = s.dtype
        s = tf.cast(s, self.moving_mean.dtype)
        if training:
            # Not tf.nn.moments: it stops the gradient through the mean inside
            # the variance, which is harmless for first derivatives but wrong
            # for second ones (exact Hessian-vector products).
            mean = tf.reduce_mean(s, axis=0)
            var = tf.reduce_mean(tf.square(s - mean), axis=0)
            n = tf.cast(tf.shape(s)[0], s.dtype)
            moments.append((mean, var * n / tf.maximum(n - 1, 1)))  # unbiased, as torch
        else:
            mean, var = self.moving_mean.value, self.moving_variance.value
        return tf.cast((s - mean) * tf.math.rsqrt(var + BN_EPSILON), dtype)

    def nodes(self, s0, ws, h_mask, probs, training):
        moments = []
        states = [self._norm(s0, training, moments)]
        offset = 0
        ops = [(k, _ACTIVATIONS[p]) for k, p in enumerate(self.primitives) if p != "none"]
        for i, w in enumerate(ws):
            stacked = tf.stack(states)  # (i + 1, B, nhid)
            masked = stacked * h_mask if h_mask is not None else stacked
            ch = tf.reshape(tf.matmul(tf.reshape(masked, (-1, self.nhid)), w),
                            (i + 1, -1, 2 * self.nhid))
            c, g = tf.split(ch, 2, axis=-1)
            c = tf.sigmoid(c)
            p = probs[offset:offset + i + 1]  # (i + 1, ops)
            # sum_k p_k (S + c (f_k(g) - S)) = P S + c (sum_k p_k f_k(g) - P S)
            total_p = tf.add_n([p[:, k] for k, _ in ops])[:, None, None]
            mixed = tf.add_n([p[:, k][:, None, None] * f(g) for k, f in ops])
            s = tf.reduce_sum(total_p * stacked + c * (mixed - total_p * stacked), axis=0)
            states.append(self._norm(s, training, moments))
            offset += i + 1
        out = tf.add_n(states[1:]) / self.steps
        if not training:
            return out, (tf.zeros_like(self.moving_mean.value),) * 2
        means = tf.add_n([m for m, _ in moments])
        variances = tf.add_n([v for _, v in moments])
        return out, (means, variances)


class RNNLanguageModel(CheckpointCollections, keras.Model):
    """Embedding -> recurrent cell -> tied decoder -> log-softmax (reference ``RNNModel``).

    ``call((tokens, hidden, masks))``: tokens int32 (B, T), hidden (B, nhid),
    masks a dict from :meth:`dropout_masks` (or None: no dropout). Returns
    ``(log_probs (B, T, vocab), last hidden (B, nhid), cell outputs (B, T, nhid))``.

    Args:
      vocab_size: words in the vocabulary.
      emsize, nhid: embedding and hidden sizes; equal, because the decoder
        shares the embedding matrix (weight tying).
      genotype: a :class:`RecurrentGenotype` (evaluation model) or None (search
        model with alphas).
      dropout, dropouth, dropoutx, dropouti, dropoute: output, hidden, cell
        input, embedding-output and embedding-row dropout rates.
      alpha_init_scale, seed: alphas start as scale * N(0, 1) (search model).
    """

    def __init__(self, vocab_size: int, emsize: int, nhid: int,
                 genotype: RecurrentGenotype | None = None, steps: int = rnn_genotypes.RNN_STEPS,
                 dropout: float = 0.75, dropouth: float = 0.25, dropoutx: float = 0.75,
                 dropouti: float = 0.2, dropoute: float = 0.0,
                 alpha_init_scale: float = 1e-3, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if emsize != nhid:
            raise ValueError(f"emsize ({emsize}) must equal nhid ({nhid}): the decoder "
                             "shares the embedding matrix")
        self.vocab_size, self.emsize, self.nhid = vocab_size, emsize, nhid
        self.rates = {"output": dropout, "h": dropouth, "x": dropoutx, "input": dropouti,
                      "embedding": dropoute}
        self.search = genotype is None
        self.embedding = self.add_weight(
            shape=(vocab_size, emsize), name="embedding",
            initializer=keras.initializers.RandomUniform(-EMBED_RANGE, EMBED_RANGE))
        self.decoder_bias = self.add_weight(shape=(vocab_size,), initializer="zeros",
                                            name="decoder_bias")
        if self.search:
            self.cell = RecurrentSearchCell(emsize, nhid, steps, name="search_cell")
            self.alphas = self.add_weight(
                shape=(rnn_genotypes.num_rnn_edges(steps), len(RNN_PRIMITIVES)),
                initializer=keras.initializers.RandomNormal(stddev=alpha_init_scale, seed=seed),
                autocast=False, name="alphas")
        else:
            self.cell = RecurrentCell(emsize, nhid, genotype, name="cell")
        self.genotype_ = genotype
        self.built = True

    # -------------------------------------------------------------- variables
    @property
    def arch_variables(self) -> list:
        return [self.alphas] if self.search else []

    @property
    def weight_variables(self) -> list:
        arch = {id(v) for v in self.arch_variables}
        return [v for v in self.trainable_variables if id(v) not in arch]

    def count_parameters(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.weight_variables))

    def genotype(self) -> RecurrentGenotype:
        if not self.search:
            return self.genotype_
        return rnn_genotypes.derive_recurrent(np.asarray(self.alphas), self.cell.steps)

    def arch_weights(self):
        return tf.nn.softmax(self.alphas, axis=-1)

    # ------------------------------------------------------------------ masks
    def dropout_masks(self, seed, batch_size: int) -> dict:
        """Dropout masks of one window for a batch of ``batch_size`` rows.

        ``embedding`` (vocab,): whole-word dropout of embedding rows; ``input``
        / ``output`` (B, D): locked (same for every time step) dropout of the
        embedded input and of the cell output; ``x`` / ``h`` (B, D): the cell's
        input and hidden-state masks. Kept entries are scaled by 1 / (1 - rate).
        """
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), len(MASK_NAMES))
        shapes = {"embedding": (self.vocab_size,), "input": (batch_size, self.emsize),
                  "x": (batch_size, self.emsize), "h": (batch_size, self.nhid),
                  "output": (batch_size, self.nhid)}
        dtype = self.compute_dtype
        masks = {}
        for name, s in zip(MASK_NAMES, tf.unstack(seeds)):
            rate = self.rates[name]
            if rate <= 0:
                masks[name] = tf.ones(shapes[name], dtype)
                continue
            keep = tf.random.stateless_uniform(shapes[name], s) >= rate
            masks[name] = tf.cast(keep, dtype) / (1.0 - rate)
        return masks

    # ------------------------------------------------------------------- call
    def call(self, inputs, training=False):
        tokens, hidden, masks = inputs
        dtype = self.compute_dtype
        embedding = tf.cast(self.embedding.value, dtype)
        weights = embedding
        if training and masks is not None:
            weights = embedding * masks["embedding"][:, None]
        x = tf.gather(weights, tokens)
        if training and masks is not None:
            x = x * masks["input"][:, None, :]
        probs = None
        if self.search:
            # Alphas and their softmax stay float32; the mixture runs in compute dtype.
            probs = tf.cast(tf.nn.softmax(self.alphas.value, -1), dtype)
        masks = masks if training else None
        raw, last = self.cell(x, hidden, None if masks is None else masks["x"],
                              None if masks is None else masks["h"], probs=probs,
                              training=training)
        out = raw * masks["output"][:, None, :] if masks is not None else raw
        logits = (tf.einsum("btd,vd->btv", out, embedding)
                  + tf.cast(self.decoder_bias.value, dtype))
        if logits.dtype in (tf.float16, tf.bfloat16):  # the softmax in float32
            logits = tf.cast(logits, tf.float32)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        return log_probs, last, raw

    def initial_hidden(self, batch_size: int):
        return tf.zeros((batch_size, self.nhid), self.compute_dtype)
