"""Training a recurrent cell from scratch (reference ``rnn/train.py``).

SGD (lr 20, the rate scaled by ``seq_len / bptt`` per window, gradient norm
clipped to 0.25, coupled weight decay 8e-7) with the temporal activation
regulariser, until the validation loss stops improving: once it is worse
than the best of all epochs but the last ``nonmono``, training switches to
averaged SGD (PyTorch ``ASGD(t0=0, lambd=0)``: the same SGD steps plus a
running mean of the weights since the switch). From then on validation,
the kept best weights, the test score and the export use the averaged
weights, as the reference does.

The weights with the best validation loss so far are kept in variables (part
of the checkpoint); the final test perplexity and the export use them.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from autonet_tf import progress
from autonet_tf.configs import RNNTrainConfig
from autonet_tf.data import text
from autonet_tf.models.rnn import RNNLanguageModel
from autonet_tf.search_space.rnn_genotypes import RecurrentGenotype
from autonet_tf.distribute.reduce import all_reduce_sum
from autonet_tf.seeding import seeded
from autonet_tf.training import by_shape
from autonet_tf.training.lm_trainer import LanguageModelTrainer
from autonet_tf.training.trainer import apply_summed
from autonet_tf.training.optimizers import MomentumSGD
from autonet_tf.training import precision
from autonet_tf.training.precision import dtype_policy

def should_average(previous: list, val_loss: float, nonmono: int) -> bool:
    """The reference's switch to ASGD: worse than the best of all epochs but the last ``nonmono``."""
    return len(previous) > nonmono and val_loss > min(previous[:-nonmono])


class RNNTrainer(LanguageModelTrainer):
    """Trains ``genotype``'s language model on ``corpus``; see the module docstring."""

    extra_metrics = ("grad_norm",)

    def __init__(self, config: RNNTrainConfig, genotype: RecurrentGenotype,
                 corpus: text.Corpus, strategy: tf.distribute.Strategy | None = None):
        super().__init__(config, corpus, strategy)
        self.genotype = genotype
        with seeded(config.seed), self.strategy.scope(), dtype_policy(config.mixed_precision):
            self.model = self._build()
            self.weight_variables = self.model.weight_variables
            self.weight_optimizer = precision.loss_scaled(
                MomentumSGD(config.learning_rate, 0.0, l2=config.weight_decay),
                config.mixed_precision)
            self.weight_optimizer.build(self.weight_variables)

            def copies(name):
                return [tf.Variable(tf.zeros_like(v.value), trainable=False,
                                    name=f"{name}_{i}")
                        for i, v in enumerate(self.weight_variables)]

            self.averages = copies("average")
            self.best = copies("best")
            self.average_count = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.asgd = tf.Variable(0, dtype=tf.int64, trainable=False)  # 1 after the switch
            self.best_loss = tf.Variable(np.inf, dtype=tf.float64, trainable=False)
            # One entry per finished epoch (any length: a resumed run may ask for
            # more epochs).
            self.val_losses = tf.Variable(np.zeros(0), dtype=tf.float64, trainable=False,
                                          shape=tf.TensorShape([None]))
        self.parameters = self.model.count_parameters()
        self.hidden = self._init_hidden(("train",))
        self._start_loop(self.train_steps, model=self.model,
                         weight_optimizer=self.weight_optimizer, averages=self.averages,
                         best=self.best, average_count=self.average_count, asgd=self.asgd,
                         best_loss=self.best_loss, val_losses=self.val_losses,
                         hidden_train=self.hidden["train"])
        signature = [tf.TensorSpec([config.batch_size, None], tf.int32),
                     tf.TensorSpec([2], tf.int64)]
        self._sgd_step = tf.function(functools.partial(self._distributed_step, average=False),
                                     autograph=False, input_signature=signature)
        self._asgd_step = tf.function(functools.partial(self._distributed_step, average=True),
                                      autograph=False, input_signature=signature)

    def _build(self) -> RNNLanguageModel:
        cfg = self.config
        return RNNLanguageModel(
            self.corpus.vocab_size, cfg.emsize, cfg.nhid, self.genotype, dropout=cfg.dropout,
            dropouth=cfg.dropouth, dropoutx=cfg.dropoutx, dropouti=cfg.dropouti,
            dropoute=cfg.dropoute, name="rnn_model")

    def _export_copy(self) -> RNNLanguageModel:
        return self._build()

    @property
    def averaging(self) -> bool:
        return bool(self.asgd.numpy())

    # ------------------------------------------------------------------ steps
    def _replica_step(self, window, seed):
        batch = self.replica_batch(window, self.hidden["train"], seed, self.config.tar_beta)
        with tf.GradientTape() as tape:
            loss, (hidden, nll) = self.batch_loss(
                lambda inputs: self.model(inputs, training=True), batch)
            scale = precision.loss_scale(self.weight_optimizer)
            loss = precision.scale_loss(loss, scale)
        grads = precision.unscale(tape.gradient(loss, self.weight_variables), scale)
        self.store_hidden(self.hidden["train"], hidden)
        grads = all_reduce_sum(grads)
        grads, norm = by_shape.clip_by_global_norm(grads, self.config.grad_clip)
        apply_summed(self.weight_optimizer, grads, self.weight_variables, self.replicas)
        return {"loss": nll, **precision.norm_metrics(norm, self.weight_optimizer, self.replicas)}

    def _distributed_step(self, window, seed, average: bool):
        out = self.reduce_sum(self.strategy.run(self._replica_step, args=(window, seed)))
        if average:  # ASGD: running mean of the weights since the switch
            n = tf.cast(self.average_count.assign_add(1), tf.float32)
            for avg, var in zip(self.averages, self.weight_variables):
                avg.assign_add((var.value - avg) / n)
        return out

    def window_step(self, window, start, seed) -> dict:
        step = self._asgd_step if self.averaging else self._sgd_step
        return {k: float(v) for k, v in step(window, seed).items()}

    # ------------------------------------------------------------ weight sets
    def _swap_in(self, source) -> list:
        saved = [v.numpy() for v in self.weight_variables]
        for var, value in zip(self.weight_variables, source):
            var.assign(tf.convert_to_tensor(value))
        return saved

    # ------------------------------------------------------------------ hooks
    def begin_epoch(self, epoch: int) -> dict:
        return {"learning_rate": self.config.learning_rate,
                "averaged": int(self.averaging)}

    def end_epoch(self, epoch: int, global_step: int) -> dict:
        averaging = self.averaging
        saved = self._swap_in(self.averages) if averaging else None
        val = self.perplexity("valid")
        if val["loss"] < float(self.best_loss.numpy()):
            self.best_loss.assign(val["loss"])
            for best, var in zip(self.best, self.weight_variables):
                best.assign(var.value)
        if saved is not None:
            self._swap_in(saved)
        previous = list(self.val_losses.numpy()[:epoch])
        switched = not averaging and should_average(previous, val["loss"], self.config.nonmono)
        self.val_losses.assign(np.append(previous, val["loss"]))
        if switched:  # ASGD from the next step on; its first step copies the weights
            self.asgd.assign(1)
            self.average_count.assign(0)
            if self.chief:
                progress.say("  switching to averaged SGD (validation loss stopped improving)")
        return {"val_loss": val["loss"], "val_perplexity": val["perplexity"],
                "averaged_sgd": bool(averaging or switched)}

    def train(self) -> dict:
        """Trains (or resumes); returns valid and test perplexity of the best weights."""
        self.loop.run()
        if np.isfinite(float(self.best_loss.numpy())):
            self._swap_in(self.best)
        valid = self.perplexity("valid")
        test = self.perplexity("test")
        return {"valid_loss": valid["loss"], "valid_perplexity": valid["perplexity"],
                "test_loss": test["loss"], "test_perplexity": test["perplexity"]}
