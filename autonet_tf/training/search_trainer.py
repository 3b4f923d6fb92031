"""The DARTS CNN search loop under a tf.distribute strategy.

One :class:`SearchTrainer` owns the supernet, both optimizers, one
``tf.train.Checkpoint`` with its ``CheckpointManager`` and the TensorBoard
writers. Its step is orbit-shaped: ``train_step(train_iterator,
val_iterator)`` is a ``tf.function`` that calls ``strategy.run`` on one
replica step, which

1. computes the architecture gradient on a validation batch (first or second
   order, :class:`~autonet_tf.training.architect.Architect`), adds the
   coupled alpha weight decay and applies Adam;
2. computes the weight gradient on the training batch, sums it across
   replicas, clips its global norm and applies momentum SGD.

Gradients are summed across replicas before clipping and before any use, and
handed to the Keras optimizers divided by the replica count (Keras sums them
again), so the update equals the single-device update on the global batch.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import tensorflow as tf

from autonet_tf import progress
from autonet_tf.configs import SearchConfig
from autonet_tf.data.images import ImageDataset
from autonet_tf.distribute.reduce import all_reduce_sum
from autonet_tf.models.cnn_search import SearchNetwork, pick_trace_sharing
from autonet_tf.search_space.genotypes import Genotype
from autonet_tf.training import by_shape
from autonet_tf.training.architect import Architect, StatelessGradients
from autonet_tf.training.collapse_guard import CollapseGuard, cell_counts, largest_eigenvalue
from autonet_tf.seeding import seeded
from autonet_tf.training.image_trainer import ImageTrainer
from autonet_tf.training.losses import count_correct, sparse_ce
from autonet_tf.training.trainer import apply_summed, capped_steps
from autonet_tf.training.optimizers import cosine_learning_rate
from autonet_tf.training import precision
from autonet_tf.training.precision import dtype_policy, loss_scale
from autonet_tf.training.search_common import SearchCommon

log = logging.getLogger("autonet_tf")

class SearchTrainer(SearchCommon, ImageTrainer):
    """Runs a DARTS CNN search; see the module docstring.

    Args:
      config: a validated :class:`SearchConfig`.
      dataset: the images; its train split is divided by ``train_portion``
        into a weight split and an architecture (validation) split.
      strategy: the tf.distribute strategy (default: the default strategy).
    """

    extra_metrics = ("arch_loss", "grad_norm")

    def __init__(self, config: SearchConfig, dataset: ImageDataset,
                 strategy: tf.distribute.Strategy | None = None):
        super().__init__(config, strategy)
        self.dataset = dataset
        order = np.random.default_rng(config.seed).permutation(len(dataset.x_train))
        split = int(math.floor(config.train_portion * len(order)))
        self.weight_split = order[:split]
        self.arch_split = order[split:]
        steps = capped_steps(
            min(len(self.weight_split), len(self.arch_split)) // config.batch_size,
            config.max_steps_per_epoch,
            f"--batch_size={config.batch_size} is larger than the training splits "
            f"({len(self.weight_split)} images for weights, {len(self.arch_split)} for "
            f"alphas with --train_portion={config.train_portion})")
        self.augment = {"on": True, "off": False}.get(config.data.augment, dataset.natural)

        sync_bn = config.sync_batchnorm and self.replicas > 1
        partial_channels = config.partial_channels if config.pc_darts else 1
        with seeded(config.seed), self.strategy.scope(), dtype_policy(config.mixed_precision):
            self.model = SearchNetwork(
                dataset.num_classes, config.init_channels, config.layers, config.steps,
                config.multiplier, config.stem_multiplier, sync_bn=sync_bn,
                alpha_init_scale=config.alpha_init_scale, seed=config.seed,
                trace_sharing=pick_trace_sharing(config.trace_sharing, dataset.input_shape,
                                                 sync_bn, partial_channels),
                partial_channels=partial_channels,
                edge_normalization=config.pc_darts, name="search_network")
            self.model(tf.zeros((1,) + dataset.input_shape), training=False)
            self._init_optimizers(config, config.momentum)
        if config.jit_compile and self.model.sync_bn:
            log.warning("--jit_compile is ignored with synchronised BatchNorm on %d replicas "
                        "(a cross-replica all-reduce cannot run inside the compiled pass)",
                        self.replicas)
        self.gradients = StatelessGradients(
            self.model, self._batch_loss, self.weight_variables, self.arch_variables,
            jit_compile=config.jit_compile, traced_once=not self.model.sync_bn)
        self.architect = Architect(self.gradients, self.weight_variables,
                                   self.arch_variables, self.weight_optimizer,
                                   config.order, config.unrolled_epsilon,
                                   loss_scale=self._arch_loss_scale, hessian=config.hessian)
        self._start_loop(steps, model=self.model, weight_optimizer=self.weight_optimizer,
                         arch_optimizer=self.arch_optimizer)
        self._full_step = tf.function(self._train_step, autograph=False)
        self._weight_step = tf.function(self._train_weights_step, autograph=False)
        self.warming_up = False
        self.eval_step = self.make_eval_step(self.model)
        self.guard = (CollapseGuard(config.guard_max_skip, config.guard_eigen_growth,
                                    config.guard_window) if config.guard_on else None)
        self._alpha_hvp = tf.function(self._distributed_alpha_hvp, autograph=False)

    # ------------------------------------------------------------------ steps
    def _batch_loss(self, call, batch):
        x, y = batch
        logits = call(x)
        loss = tf.nn.compute_average_loss(sparse_ce(y, logits),
                                          global_batch_size=self.config.batch_size)
        return loss, logits

    def _replica_step(self, train_batch, val_batch):
        # Weights and BatchNorm statistics read once for both steps (the
        # architecture step changes neither): a read is a graph node per variable.
        weights = self.architect.weight_values()
        state = self.gradients.non_trainable_values()
        val_loss, arch_grads, _ = self.architect.gradients(train_batch, val_batch, weights, state)
        self._apply_arch_gradients(arch_grads)
        return {**self._weight_replica_step(train_batch, weights, state), "arch_loss": val_loss}

    def _train_step(self, train_iterator, val_iterator):
        return self.reduce_sum(self.strategy.run(
            self._replica_step, args=(next(train_iterator), next(val_iterator))))

    def _weight_replica_step(self, train_batch, weights=None, state=None):
        """The weight step, at the current alphas (alone during the architecture warm-up).

        The same traced pass as the architecture step's; it is the only pass
        whose BatchNorm statistics are kept. ``weights``, ``state``: the
        current weights and statistics if already read (None: read them).
        """
        if weights is None:
            weights = self.architect.weight_values()
        loss, grads, _, logits, state = self.gradients(
            weights, self.architect.alpha_values(), train_batch,
            loss_scale(self.weight_optimizer), non_trainable=state)
        for variable, value in zip(self.model.non_trainable_variables, state):
            variable.assign(value)
        grads = all_reduce_sum(grads)
        grads, norm = by_shape.clip_by_global_norm(grads, self.config.grad_clip)
        apply_summed(self.weight_optimizer, grads, self.weight_variables, self.replicas)
        return {"loss": loss, "arch_loss": tf.zeros_like(loss),
                "correct": count_correct(train_batch[1], logits),
                **precision.norm_metrics(norm, self.weight_optimizer, self.replicas)}

    def _train_weights_step(self, train_iterator, val_iterator):
        next(val_iterator)  # consumed as in a full step: batch order does not depend on it
        return self.reduce_sum(self.strategy.run(self._weight_replica_step,
                                                 args=(next(train_iterator),)))

    def _current_step(self):
        return self._weight_step if self.warming_up else self._full_step

    def train_step(self, train_iterator, val_iterator) -> dict:
        """One iteration: architecture step then weight step (weights only in warm-up)."""
        return self._current_step()(train_iterator, val_iterator)

    def next_step_is_new(self) -> bool:
        return self._current_step().experimental_get_tracing_count() == 0

    def loop_key(self):
        return self.warming_up  # the warm-up step (weights only) is another graph

    # ------------------------------------------------------------------- data
    def _batches(self, indices, epoch, skip=0, shuffle=True, drop_remainder=True, salt=0):
        return self.distributed_batches(
            self.dataset.x_train[indices], self.dataset.y_train[indices], epoch, skip=skip,
            shuffle=shuffle, drop_remainder=drop_remainder, salt=salt, augment=self.augment,
            mean=self.dataset.mean, std=self.dataset.std, shape=self.dataset.input_shape)

    def epoch_iterators(self, epoch: int, skip: int = 0) -> tuple:
        """(weight-split iterator, architecture-split iterator) of one epoch."""
        return (iter(self._batches(self.weight_split, epoch, skip, salt=0)),
                iter(self._batches(self.arch_split, epoch, skip, salt=1)))

    def evaluate(self, epoch: int = 0) -> dict:
        """Loss and accuracy of the supernet (inference mode) on the architecture split."""
        return self.evaluate_batches(
            self.eval_step,
            lambda: self._batches(self.arch_split, epoch, shuffle=False, drop_remainder=False),
            len(self.arch_split))

    # ---------------------------------------------------------------- outputs
    def softmax_alphas(self) -> dict:
        normal, reduce = self.model.arch_weights()
        out = {"primitives": list(self.model.primitives),
               "normal": np.asarray(normal).round(6).tolist(),
               "reduce": np.asarray(reduce).round(6).tolist()}
        if self.model.betas:  # PC-DARTS: each edge's weight within its node
            edges = self.model.edge_weights()
            out["edges"] = {cell: np.asarray(w).round(6).tolist()
                            for cell, w in zip(("normal", "reduce"), edges)}
        return out

    # --------------------------------------------------------- collapse guard
    #: Lanczos iterations per eigenvalue estimate (one Hessian-vector product each)
    EIGEN_ITERATIONS = 10

    def _replica_alpha_hvp(self, batch, vector):
        """The Hessian of the loss w.r.t. the alphas times ``vector``, summed over replicas.

        Exact (double backprop, ``StatelessGradients.second_derivative``): a
        central difference in the alphas is dominated by ReLU and max-pool kinks.
        """
        weights, alphas = self.architect.values()
        return all_reduce_sum(self.gradients.second_derivative(
            weights, alphas, vector, batch, self._arch_loss_scale(), along="alphas"))

    def _distributed_alpha_hvp(self, batch, vector):
        out = self.strategy.run(self._replica_alpha_hvp, args=(batch, vector))
        return [self.strategy.experimental_local_results(t)[0] for t in out]

    def hessian_eigenvalue(self, epoch: int) -> float:
        """Largest eigenvalue of the validation-loss Hessian w.r.t. the alphas.

        Lanczos iteration on the first batch of the architecture split (in
        order, no augmentation), seeded by (seed, epoch).
        """
        batch = next(iter(self._batches(self.arch_split, epoch, shuffle=False)))
        shapes = [tuple(a.shape) for a in self.arch_variables]
        sizes = [int(np.prod(s)) for s in shapes]

        def hvp(flat):
            parts = np.split(flat.astype(np.float32), np.cumsum(sizes)[:-1])
            vector = [tf.constant(p.reshape(s)) for p, s in zip(parts, shapes)]
            return np.concatenate([np.ravel(t) for t in self._alpha_hvp(batch, vector)])

        return largest_eigenvalue(hvp, sum(sizes), self.EIGEN_ITERATIONS,
                                   seed=self.config.seed * 1000 + epoch)

    def _chief_says(self, flag: bool) -> bool:
        """The chief's ``flag`` on every worker (multi-worker: one all-reduce)."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return flag
        value = tf.constant(1.0 if (flag and self.chief) else 0.0)
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                     self.strategy.run(lambda: tf.identity(value)), axis=None)
        return float(total) > 0

    def end_epoch(self, epoch: int, global_step: int) -> dict:
        record = super().end_epoch(epoch, global_step)
        if self.guard is None or self.warming_up:
            return record
        first = self._alpha_hvp.experimental_get_tracing_count() == 0
        with progress.note("  collapse guard: estimating the Hessian eigenvalue (the first "
                           "time builds its graph)", enabled=first and self.chief and self.config.progress):
            signals = {**cell_counts(self.model.genotype()),
                       "hessian_eigenvalue": round(self.hessian_eigenvalue(epoch), 6)}
        record.update(signals)
        decision = self.guard.check(epoch + 1, record, self.loop.history) if self.chief else None
        self.loop.request_stop(self._chief_says(bool(decision and decision.stop)))
        if self.chief:
            with self.loop.writer("train").as_default(step=global_step):
                for key, value in signals.items():
                    tf.summary.scalar(f"collapse/{key}", value)
            if decision.stop:
                record["collapse_guard"] = {"reason": decision.reason,
                                            "kept_epoch": decision.keep_epoch}
        return record

    def describe_epoch(self, record: dict) -> str:
        text = super().describe_epoch(record)
        if "hessian_eigenvalue" in record:
            text += (f"\n  collapse signals: {record['normal_skip_connects']} skip connections, "
                     f"{record['normal_parameter_free']} parameter-free ops in the normal cell, "
                     f"Hessian eigenvalue {record['hessian_eigenvalue']:.4g}")
        guard = record.get("collapse_guard")
        if guard:
            kept = (f"the genotype of epoch {guard['kept_epoch']}" if guard["kept_epoch"]
                    else f"this epoch's genotype with at most {self.config.guard_max_skip} "
                         f"skip connections")
            text += (f"\ncollapse guard: stopped the search after epoch {record['epoch']}: "
                     f"{guard['reason']}; keeping {kept} (--collapse_guard=off searches on)")
        return text

    def search(self):
        """Runs (or resumes) the search; returns the final genotype, or the one the guard kept."""
        self.loop.run()
        return self.kept_genotype() or self.genotype()

    def kept_genotype(self):
        """The genotype the collapse guard kept when it stopped the search (else None)."""
        guard = next((r["collapse_guard"] for r in self.loop.history
                      if "collapse_guard" in r), None)
        if guard is None:
            return None
        if guard["kept_epoch"] is None:
            caps = [c for c in (self.config.guard_max_skip, self.config.max_skip) if c is not None]
            return self.model.genotype(min(caps))
        kept = next(r for r in self.loop.history if r["epoch"] == guard["kept_epoch"])
        return Genotype.from_dict(kept["genotype"])

    # ------------------------------------------------------------------ hooks
    def begin_epoch(self, epoch: int) -> dict:
        cfg = self.config
        lr = cosine_learning_rate(epoch, cfg.epochs, cfg.learning_rate, cfg.learning_rate_min)
        self.weight_optimizer.learning_rate.assign(lr)
        self.warming_up = epoch < cfg.arch_warmup_epochs
        if self.warming_up:
            return {"learning_rate": lr, "arch_warmup": 1}
        return {"learning_rate": lr}

    def validate(self, epoch: int) -> dict:
        val = self.evaluate(epoch)
        return {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
