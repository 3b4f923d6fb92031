"""The DARTS recurrent-cell search loop (reference ``rnn/train_search.py``).

Each step, on one training window (weights) and one window of the search
split (alphas; the reference uses PTB's valid split for it, batchified with
the training batch size):

1. the architecture gradient on the search window, first or second order,
   from the SAME :class:`~autonet_tf.training.architect.Architect` as the
   CNN search (with the recurrent virtual step: plain SGD with the gradient
   clipped to ``grad_clip``), plus coupled alpha weight decay, applied with
   Adam; the search window's hidden state advances with that pass;
2. the weight gradient on the training window (NLL + temporal activation
   regularisation), summed across replicas, clipped to ``grad_clip`` and
   applied with SGD at ``lr * seq_len / bptt``.

The dropout masks of a window come from a seed (run seed, global step), so
every pass of one step shares them and a resumed run replays them.
"""

from __future__ import annotations


import numpy as np
import tensorflow as tf

from autonet_tf.configs import RNNSearchConfig
from autonet_tf.data import text
from autonet_tf.distribute.reduce import all_reduce_sum
from autonet_tf.models.rnn import RNNLanguageModel
from autonet_tf.training import by_shape
from autonet_tf.training.architect import Architect, StatelessGradients
from autonet_tf.seeding import seeded
from autonet_tf.training.lm_trainer import LanguageModelTrainer
from autonet_tf.training.trainer import apply_summed
from autonet_tf.training import precision
from autonet_tf.training.precision import dtype_policy, loss_scale
from autonet_tf.training.search_common import SearchCommon

class RNNSearchTrainer(SearchCommon, LanguageModelTrainer):
    """Runs a DARTS recurrent search; see the module docstring."""

    extra_metrics = ("arch_loss", "grad_norm")

    def __init__(self, config: RNNSearchConfig, corpus: text.Corpus,
                 strategy: tf.distribute.Strategy | None = None):
        super().__init__(config, corpus, strategy)
        self.search_rows = text.batchify(corpus.valid, config.batch_size,
                                         "validation split (searched with --batch_size rows)")
        with seeded(config.seed), self.strategy.scope(), dtype_policy(config.mixed_precision):
            self.model = RNNLanguageModel(
                corpus.vocab_size, config.emsize, config.nhid, None, config.steps,
                config.dropout, config.dropouth, config.dropoutx, config.dropouti,
                config.dropoute, config.alpha_init_scale, config.seed,
                name="rnn_search_model")
            self._init_optimizers(config, momentum=0.0)  # plain SGD, as the reference
        self.hidden = self._init_hidden(("train", "search"))
        self.gradients = StatelessGradients(
            self.model, self.batch_loss, self.weight_variables, self.arch_variables,
            jit_compile=config.jit_compile)
        self.architect = Architect(self.gradients, self.weight_variables, self.arch_variables,
                                   self.weight_optimizer, config.order,
                                   config.unrolled_epsilon, virtual_clip=config.grad_clip,
                                   loss_scale=self._arch_loss_scale, hessian=config.hessian)
        self._start_loop(self.train_steps, model=self.model,
                         weight_optimizer=self.weight_optimizer,
                         arch_optimizer=self.arch_optimizer,
                         **{f"hidden_{k}": v for k, v in self.hidden.items()})
        spec = tf.TensorSpec([config.batch_size, None], tf.int32)
        self._step = tf.function(
            self._distributed_step, autograph=False,
            input_signature=[spec, spec, tf.TensorSpec([2], tf.int64)])

    # ------------------------------------------------------------------ steps
    def _replica_step(self, train_window, search_window, seed):
        cfg = self.config
        seeds = tf.random.experimental.stateless_split(seed, 2)
        train = self.replica_batch(train_window, self.hidden["train"], seeds[0], cfg.tar_beta)
        search = self.replica_batch(search_window, self.hidden["search"], seeds[1], 0.0)
        # Weights and BatchNorm statistics read once for both steps (the
        # architecture step changes neither).
        weights = self.architect.weight_values()
        state = self.gradients.non_trainable_values()
        arch_loss, arch_grads, (search_hidden, _) = self.architect.gradients(
            train, search, weights, state)
        self.store_hidden(self.hidden["search"], search_hidden)
        self._apply_arch_gradients(arch_grads)

        _, grads, _, (hidden, nll), state = self.gradients(
            weights, self.architect.alpha_values(), train, loss_scale(self.weight_optimizer),
            non_trainable=state)
        # BatchNorm statistics: each replica's moments, averaged over replicas.
        state = all_reduce_sum(state)
        for variable, value in zip(self.model.non_trainable_variables, state):
            variable.assign(value / self.replicas)
        self.store_hidden(self.hidden["train"], hidden)
        grads = all_reduce_sum(grads)
        grads, norm = by_shape.clip_by_global_norm(grads, cfg.grad_clip)
        apply_summed(self.weight_optimizer, grads, self.weight_variables, self.replicas)
        return {"loss": nll, "arch_loss": arch_loss,
                **precision.norm_metrics(norm, self.weight_optimizer, self.replicas)}

    def _distributed_step(self, train_window, search_window, seed):
        return self.reduce_sum(self.strategy.run(
            self._replica_step, args=(train_window, search_window, seed)))

    def window_step(self, window, start, seed) -> dict:
        rows = self.search_rows
        position = start % (rows.shape[1] - 1)
        seq_len = min(self.config.bptt, rows.shape[1] - 1 - position)
        out = self._step(window, rows[:, position:position + seq_len + 1], seed)
        return {k: float(v) for k, v in out.items()}

    # ---------------------------------------------------------------- outputs
    def softmax_alphas(self) -> dict:
        return {"primitives": list(self.model.cell.primitives),
                "recurrent": np.asarray(self.model.arch_weights()).round(6).tolist()}

    # ------------------------------------------------------------------ hooks
    def begin_epoch(self, epoch: int) -> dict:
        return {"learning_rate": self.config.learning_rate}

    def validate(self, epoch: int) -> dict:
        val = self.perplexity("valid")
        return {"val_loss": val["loss"], "val_perplexity": val["perplexity"]}
