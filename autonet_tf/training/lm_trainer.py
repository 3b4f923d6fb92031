"""What the recurrent search and the recurrent training share.

:class:`LanguageModelTrainer` (a :class:`~autonet_tf.training.trainer.Trainer`
reporting perplexity) owns the corpus rows, the per-epoch window schedule,
the persistent hidden states and the perplexity evaluation:

* the training stream is cut into ``batch_size`` rows (reference
  ``batchify``); each step reads the next window of the schedule
  (:func:`autonet_tf.data.text.window_schedule`) and the learning rate is
  scaled by ``seq_len / bptt`` for that step, as the reference does;
* hidden states persist from window to window in non-trainable variables of
  shape (global batch, nhid) (truncated BPTT: no gradient flows into the
  previous window) and are part of the checkpoint, so a killed run resumes
  mid-epoch exactly; they are reset at the start of every epoch;
* under a multi-replica strategy every replica takes the rows
  ``[r * b, (r + 1) * b)`` of each window (``b = batch / replicas``), reads
  the same rows of the hidden state, and the new rows are all-gathered back,
  so every replica holds the whole state;
* perplexity = exp(mean next-token NLL) over a split batchified with
  ``eval_batch_size`` rows, read in ``bptt`` windows from a zero state, in
  inference mode (reference ``evaluate``).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from autonet_tf.data import text
from autonet_tf.errors import UserInputError
from autonet_tf.training.trainer import Trainer, capped_steps


def gather_rows(local):
    """The whole batch from every replica's rows (identity on one replica)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return local
    return ctx.all_gather(local, axis=0)


def lm_batch_loss(call, batch, global_batch: int):
    """This replica's share of the global mean NLL (+ TAR); outputs (hidden, NLL share).

    ``batch`` = (tokens, targets, hidden, masks, tar_beta); ``call(inputs)``
    runs the language model. The temporal activation regulariser (reference
    ``--beta``) is ``tar_beta * mean((h_t+1 - h_t)^2)`` of the cell outputs.
    """
    tokens, targets, hidden, masks, tar_beta = batch
    log_probs, last, raw = call((tokens, hidden, masks))
    nll = -tf.gather(log_probs, targets, batch_dims=2)
    dtype = nll.dtype
    nll_share = tf.reduce_sum(nll) / tf.cast(global_batch * tf.shape(tokens)[1], dtype)
    share = tf.cast(tf.shape(tokens)[0], dtype) / global_batch
    steps = tf.cast(tf.square(raw[:, 1:] - raw[:, :-1]), dtype)  # empty for 1-token windows
    slowness = tf.reduce_sum(steps) / tf.cast(tf.maximum(tf.size(steps), 1), dtype)
    loss = nll_share + tf.cast(tar_beta, dtype) * share * slowness
    return loss, (last, nll_share)


class LanguageModelTrainer(Trainer):
    """Shared corpus, hidden-state and evaluation machinery; see the module docstring."""

    metric = "perplexity"

    def __init__(self, config, corpus: text.Corpus, strategy=None):
        """Places the trainer and batchifies the splits (``train_steps``: steps per epoch)."""
        super().__init__(config, strategy)
        if config.steps_per_loop != 1:
            raise UserInputError(
                f"--steps_per_loop={config.steps_per_loop} does not apply to --model=rnn: the "
                f"recurrent trainers choose each window's length on the host, one step a call")
        self.corpus = corpus
        self.train_rows = text.batchify(corpus.train, config.batch_size, "training split")
        self.eval_rows = {
            split: text.batchify(corpus.split(split), config.eval_batch_size,
                                 f"{'validation' if split == 'valid' else split} split")
            for split in ("valid", "test")}
        self.train_steps = capped_steps(
            (self.train_rows.shape[1] - 1) // config.bptt, config.max_steps_per_epoch,
            f"--bptt={config.bptt} is longer than the training rows "
            f"({self.train_rows.shape[1]} tokens each with --batch_size={config.batch_size})")

    def _init_hidden(self, names) -> dict:
        with self.strategy.scope():
            return {name: tf.Variable(
                tf.zeros((self.batch_size, self.model.nhid), self.model.compute_dtype),
                trainable=False, name=f"hidden_{name}",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA) for name in names}

    def _reset_hidden(self):
        for var in self.hidden.values():
            var.assign(tf.zeros_like(var))

    # ------------------------------------------------------------ replica side
    def _rows(self):
        """(first row, rows) of this replica in the global batch."""
        b = self.batch_size // self.replicas
        if self.replicas == 1:
            return 0, b
        r = tf.distribute.get_replica_context().replica_id_in_sync_group
        return r * b, b

    def replica_batch(self, window, hidden_var, seed, tar_beta):
        """(tokens, targets, hidden, masks, tar_beta) of this replica's rows."""
        start, b = self._rows()
        rows = window[start:start + b]
        masks = self.model.dropout_masks(seed, self.batch_size)
        masks = {k: (v if k == "embedding" else v[start:start + b]) for k, v in masks.items()}
        hidden = tf.convert_to_tensor(hidden_var)[start:start + b]
        return (rows[:, :-1], rows[:, 1:], hidden, masks,
                tf.constant(tar_beta, self.model.compute_dtype))

    def batch_loss(self, call, batch):
        return lm_batch_loss(call, batch, self.batch_size)

    def store_hidden(self, var, local):
        var.assign(gather_rows(local))

    # ---------------------------------------------------------------- windows
    def epoch_iterators(self, epoch: int, skip: int = 0) -> tuple:
        cfg = self.config
        if skip == 0:
            self._reset_hidden()
        schedule = text.window_schedule(self.train_rows.shape[1], cfg.bptt,
                                        self.loop.steps_per_epoch, cfg.seed, epoch,
                                        cfg.variable_bptt, cfg.max_seq_len_delta)
        return (iter([(epoch, step, start, seq_len)
                      for step, (start, seq_len) in enumerate(schedule)][skip:]),)

    def train_step(self, windows) -> dict:
        epoch, step, start, seq_len = next(windows)
        lr = self.config.learning_rate * seq_len / self.config.bptt
        self.weight_optimizer.learning_rate.assign(lr)
        window = self.train_rows[:, start:start + seq_len + 1]
        seed = np.array([self.config.seed, epoch * self.loop.steps_per_epoch + step], np.int64)
        return self.window_step(window, start, seed)

    # ------------------------------------------------------------- evaluation
    def _make_eval_step(self):
        model = self.model

        def step(window, hidden):
            log_probs, last, _ = model((window[:, :-1], hidden, None), training=False)
            nll = -tf.gather(log_probs, window[:, 1:], batch_dims=2)
            return tf.reduce_sum(nll), last

        return tf.function(step, autograph=False, reduce_retracing=True)

    def perplexity(self, split: str) -> dict:
        """{'loss': mean NLL, 'perplexity': exp(loss)} of ``split`` in inference mode."""
        if not hasattr(self, "_eval_step"):
            self._eval_step = self._make_eval_step()
        rows = self.eval_rows[split]
        hidden = self.model.initial_hidden(rows.shape[0])
        total, count = 0.0, 0
        for start, seq_len in text.eval_windows(rows.shape[1], self.config.bptt):
            nll, hidden = self._eval_step(rows[:, start:start + seq_len + 1], hidden)
            total += float(nll)
            count += rows.shape[0] * seq_len
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
