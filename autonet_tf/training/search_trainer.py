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

import json
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from autonet_tf.configs import SearchConfig
from autonet_tf.data import pipeline
from autonet_tf.data.images import ImageDataset
from autonet_tf.distribute.strategy import is_chief
from autonet_tf.errors import TrainingDiverged, UserInputError
from autonet_tf.models.cnn_search import SearchNetwork
from autonet_tf.search_space.genotypes import Genotype
from autonet_tf.training import run_dir
from autonet_tf.training.architect import Architect, StatelessGradients, all_reduce_sum
from autonet_tf.training.optimizers import MomentumSGD, cosine_learning_rate

log = logging.getLogger("autonet_tf")

# Model-defining settings that must match to resume from a run directory.
_STRUCTURAL = ("layers", "init_channels", "steps", "multiplier", "stem_multiplier", "order")


def check_resumable(model_dir: str, config: SearchConfig) -> None:
    """Rejects a model_dir that holds a run with a different model or dataset."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        return
    try:
        old = run_dir.read_json(path)
    except (OSError, json.JSONDecodeError):
        return
    new = config.to_dict()
    for key in _STRUCTURAL:
        if key in old and old[key] != new[key]:
            raise UserInputError(
                f"--model_dir={model_dir!r} holds a run with {key}={old[key]!r}, not "
                f"{new[key]!r}; use a new --model_dir to start a different search")
    old_ds = old.get("data", {}).get("dataset")
    if old_ds is not None and old_ds != config.data.dataset:
        raise UserInputError(
            f"--model_dir={model_dir!r} holds a search on dataset {old_ds!r}, not "
            f"{config.data.dataset!r}; use a new --model_dir")


def sparse_ce(labels, logits):
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


class SearchTrainer:
    """Runs a DARTS CNN search; see the module docstring.

    Args:
      config: a validated :class:`SearchConfig`.
      dataset: the images; its train split is divided by ``train_portion``
        into a weight split and an architecture (validation) split.
      strategy: the tf.distribute strategy (default: the default strategy).
    """

    def __init__(self, config: SearchConfig, dataset: ImageDataset,
                 strategy: tf.distribute.Strategy | None = None):
        self.config = config
        self.dataset = dataset
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = is_chief(self.strategy)
        if config.batch_size % self.replicas:
            raise UserInputError(
                f"--batch_size={config.batch_size} must be divisible by the "
                f"{self.replicas} replicas of --strategy={config.strategy}")
        order = np.random.default_rng(config.seed).permutation(len(dataset.x_train))
        split = int(math.floor(config.train_portion * len(order)))
        self.weight_split = order[:split]
        self.arch_split = order[split:]
        steps = min(len(self.weight_split), len(self.arch_split)) // config.batch_size
        if steps == 0:
            raise UserInputError(
                f"--batch_size={config.batch_size} is larger than the training splits "
                f"({len(self.weight_split)} images for weights, {len(self.arch_split)} for "
                f"alphas with --train_portion={config.train_portion})")
        if config.max_steps_per_epoch:
            steps = min(steps, config.max_steps_per_epoch)
        self.steps_per_epoch = steps
        self.augment = {"on": True, "off": False}.get(config.data.augment, dataset.natural)

        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.model = SearchNetwork(
                dataset.num_classes, config.init_channels, config.layers, config.steps,
                config.multiplier, config.stem_multiplier,
                sync_bn=config.sync_batchnorm and self.replicas > 1,
                alpha_init_scale=config.alpha_init_scale, seed=config.seed,
                name="search_network")
            self.model(tf.zeros((1,) + dataset.input_shape), training=False)
            self.weight_variables = self.model.weight_variables
            self.arch_variables = self.model.arch_variables
            self.weight_optimizer = MomentumSGD(config.learning_rate, config.momentum,
                                                l2=config.weight_decay)
            self.weight_optimizer.build(self.weight_variables)
            self.arch_optimizer = keras.optimizers.Adam(
                config.arch_learning_rate, beta_1=config.arch_beta_1,
                beta_2=config.arch_beta_2, epsilon=1e-8)
            self.arch_optimizer.build(self.arch_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                             name="step_in_epoch")
        if config.jit_compile and self.model.sync_bn:
            log.warning("--jit_compile is ignored with synchronised BatchNorm on %d replicas "
                        "(a cross-replica all-reduce cannot run inside the compiled pass)",
                        self.replicas)
        self.gradients = StatelessGradients(
            self.model, self._batch_loss, self.weight_variables, self.arch_variables,
            jit_compile=config.jit_compile, traced_once=not self.model.sync_bn)
        self.architect = Architect(self.gradients, self.weight_variables,
                                   self.arch_variables, self.weight_optimizer,
                                   config.order, config.unrolled_epsilon)
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, weight_optimizer=self.weight_optimizer,
            arch_optimizer=self.arch_optimizer, epoch=self.epoch,
            step_in_epoch=self.step_in_epoch)
        ckpt_dir = os.path.join(config.model_dir, "checkpoints")
        if not self.chief:  # workers save to a scratch place, as tf.distribute expects
            task = self.strategy.cluster_resolver.task_id
            ckpt_dir = os.path.join(config.model_dir, ".workers", f"worker_{task}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=2)
        self.train_step = tf.function(self._train_step, autograph=False)
        self.eval_step = tf.function(self._eval_step, autograph=False)
        self._writers = None

    # ------------------------------------------------------------------ steps
    def _batch_loss(self, call, batch):
        x, y = batch
        logits = call(x)
        loss = tf.nn.compute_average_loss(sparse_ce(y, logits),
                                          global_batch_size=self.config.batch_size)
        return loss, logits

    def _apply(self, optimizer, summed_grads, variables):
        # Keras optimizers sum gradients over replicas; ours are summed already.
        scale = 1.0 / self.replicas
        grads = summed_grads if self.replicas == 1 else [g * scale for g in summed_grads]
        optimizer.apply(grads, variables)

    def _replica_step(self, train_batch, val_batch):
        cfg = self.config
        val_loss, arch_grads = self.architect.gradients(train_batch, val_batch)
        if cfg.arch_weight_decay:
            arch_grads = [g + cfg.arch_weight_decay * tf.convert_to_tensor(a.value)
                          for g, a in zip(arch_grads, self.arch_variables)]
        self._apply(self.arch_optimizer, arch_grads, self.arch_variables)

        # Weight step: the same traced pass, at the updated alphas; it is the
        # only pass whose BatchNorm statistics are kept.
        weights, alphas = self.architect.values()
        loss, grads, _, logits, state = self.gradients(weights, alphas, train_batch)
        for variable, value in zip(self.model.non_trainable_variables, state):
            variable.assign(value)
        y = train_batch[1]
        grads = all_reduce_sum(grads)
        grads, norm = tf.clip_by_global_norm(grads, cfg.grad_clip)
        self._apply(self.weight_optimizer, grads, self.weight_variables)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y), tf.float32))
        return {"loss": loss, "arch_loss": val_loss, "correct": correct,
                "grad_norm": norm / self.replicas}

    def _train_step(self, train_iterator, val_iterator):
        outputs = self.strategy.run(self._replica_step,
                                    args=(next(train_iterator), next(val_iterator)))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in outputs.items()}

    def _eval_step(self, iterator):
        def replica(x, y):
            logits = self.model(x, training=False)
            losses = sparse_ce(y, logits)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                              tf.float32)
            return {"loss": tf.reduce_sum(losses), "correct": tf.reduce_sum(correct),
                    "count": tf.cast(tf.size(y), tf.float32)}

        outputs = self.strategy.run(replica, args=next(iterator))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in outputs.items()}

    # ------------------------------------------------------------------- data
    def _batches(self, indices, epoch, skip=0, shuffle=True, drop_remainder=True, salt=0):
        ds = pipeline.image_batches(
            self.dataset.x_train[indices], self.dataset.y_train[indices],
            self.config.batch_size, mean=self.dataset.mean, std=self.dataset.std,
            seed=self.config.seed * 1000 + salt, epoch=epoch, shuffle=shuffle,
            augment=self.augment and shuffle, skip_batches=skip,
            drop_remainder=drop_remainder)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(ds.with_options(options))

    def evaluate(self, epoch: int = 0) -> dict:
        """Loss and accuracy of the supernet (inference mode) on the architecture split."""
        totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
        iterator = iter(self._batches(self.arch_split, epoch, shuffle=False,
                                      drop_remainder=False))
        # The iterator (not its batches) is the tf.function argument, so the
        # last partial batch does not trigger a second trace.
        for _ in range(math.ceil(len(self.arch_split) / self.config.batch_size)):
            for k, v in self.eval_step(iterator).items():
                totals[k] += float(v)
        count = max(totals["count"], 1.0)
        return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / count}

    # ---------------------------------------------------------------- outputs
    def _writer(self, name):
        if self._writers is None:
            logdir = os.path.join(self.config.model_dir, "logs")
            self._writers = {n: tf.summary.create_file_writer(os.path.join(logdir, n))
                             for n in ("train", "val")}
        return self._writers[name]

    def softmax_alphas(self) -> dict:
        normal, reduce = self.model.arch_weights()
        return {"primitives": list(self.model.primitives),
                "normal": np.asarray(normal).round(6).tolist(),
                "reduce": np.asarray(reduce).round(6).tolist()}

    def _log_alphas(self, step):
        alphas = self.softmax_alphas()
        with self._writer("train").as_default(step=step):
            for cell in ("normal", "reduce"):
                weights = np.asarray(alphas[cell])
                for k, op in enumerate(alphas["primitives"]):
                    tf.summary.scalar(f"alpha_{cell}/{op}", float(weights[:, k].mean()))
                # Heat map: one row per edge, one column per op, upscaled 8x.
                scaled = weights / max(weights.max(), 1e-12)
                image = np.kron(scaled, np.ones((8, 8)))[None, :, :, None]
                tf.summary.image(f"alphas_{cell}", image.astype(np.float32))

    def _write_epoch(self, epoch, genotype: Genotype, record: dict, history: list):
        d = self.config.model_dir
        run_dir.write_json(os.path.join(d, "genotypes", f"epoch_{epoch:03d}.json"),
                           genotype.to_dict())
        run_dir.write_json(os.path.join(d, "alphas", f"epoch_{epoch:03d}.json"),
                           self.softmax_alphas())
        history[:] = [h for h in history if h["epoch"] < epoch] + [record]
        run_dir.write_text(os.path.join(d, "history.jsonl"),
                           "".join(json.dumps(h) + "\n" for h in history))

    def _read_history(self, completed_epochs):
        path = os.path.join(self.config.model_dir, "history.jsonl")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [r for r in rows if r["epoch"] <= completed_epochs]

    # ------------------------------------------------------------------- loop
    def restore(self) -> tuple[int, int]:
        """Restores the latest checkpoint if any; returns (epoch, step in epoch)."""
        self.manager.restore_or_initialize()
        return int(self.epoch.numpy()), int(self.step_in_epoch.numpy())

    def _save(self, epoch, step):
        self.epoch.assign(epoch)
        self.step_in_epoch.assign(step)
        self.manager.save(checkpoint_number=epoch * self.steps_per_epoch + step)

    def search(self) -> Genotype:
        """Runs (or resumes) the search; returns the final genotype."""
        cfg = self.config
        start_epoch, start_step = self.restore()
        if (start_epoch, start_step) != (0, 0):
            log.info("Resuming from epoch %d, step %d (%s)", start_epoch, start_step,
                     self.manager.latest_checkpoint)
            if self.chief:
                print(f"Resuming from checkpoint: epoch {start_epoch + 1}, step {start_step}",
                      flush=True)
        history = self._read_history(start_epoch) if self.chief else []
        for epoch in range(start_epoch, cfg.epochs):
            lr = cosine_learning_rate(epoch, cfg.epochs, cfg.learning_rate,
                                      cfg.learning_rate_min)
            self.weight_optimizer.learning_rate.assign(lr)
            skip = start_step if epoch == start_epoch else 0
            train_it = iter(self._batches(self.weight_split, epoch, skip, salt=0))
            val_it = iter(self._batches(self.arch_split, epoch, skip, salt=1))
            bar = None
            if cfg.progress and self.chief:
                print(f"Epoch {epoch + 1}/{cfg.epochs} (lr {lr:.5f})", flush=True)
                bar = keras.utils.Progbar(self.steps_per_epoch,
                                          stateful_metrics=["loss", "acc", "arch_loss"])
                if skip:
                    bar.update(skip)
            sums = {"loss": 0.0, "correct": 0.0, "arch_loss": 0.0}
            started = time.time()
            for step in range(skip, self.steps_per_epoch):
                out = {k: float(v) for k, v in self.train_step(train_it, val_it).items()}
                if not (math.isfinite(out["loss"]) and math.isfinite(out["arch_loss"])):
                    raise TrainingDiverged(
                        f"loss became {out['loss']} (architecture loss {out['arch_loss']}) at "
                        f"epoch {epoch + 1} step {step + 1}; stopped, the last good checkpoint "
                        f"{self.manager.latest_checkpoint} was kept")
                for k in sums:
                    sums[k] += out[k]
                done = step + 1 - skip
                global_step = epoch * self.steps_per_epoch + step + 1
                if bar is not None:
                    bar.update(step + 1, [("loss", sums["loss"] / done),
                                          ("acc", sums["correct"] / (done * cfg.batch_size)),
                                          ("arch_loss", sums["arch_loss"] / done)])
                if self.chief and global_step % cfg.log_every == 0:
                    with self._writer("train").as_default(step=global_step):
                        tf.summary.scalar("loss", out["loss"])
                        tf.summary.scalar("accuracy", out["correct"] / cfg.batch_size)
                        tf.summary.scalar("arch_loss", out["arch_loss"])
                        tf.summary.scalar("grad_norm", out["grad_norm"])
                if step + 1 < self.steps_per_epoch and (step + 1) % cfg.checkpoint_every == 0:
                    self._save(epoch, step + 1)
            done = max(self.steps_per_epoch - skip, 1)
            val = self.evaluate(epoch)
            global_step = (epoch + 1) * self.steps_per_epoch
            genotype = self.model.genotype()
            record = {"epoch": epoch + 1, "train_loss": sums["loss"] / done,
                      "train_accuracy": sums["correct"] / (done * cfg.batch_size),
                      "arch_loss": sums["arch_loss"] / done, "val_loss": val["loss"],
                      "val_accuracy": val["accuracy"], "learning_rate": lr,
                      "seconds": time.time() - started, "genotype": genotype.to_dict()}
            if self.chief:
                with self._writer("train").as_default(step=global_step):
                    tf.summary.scalar("epoch_loss", record["train_loss"])
                    tf.summary.scalar("epoch_accuracy", record["train_accuracy"])
                    tf.summary.scalar("learning_rate", lr)
                    tf.summary.scalar("arch_learning_rate",
                                      float(self.arch_optimizer.learning_rate))
                with self._writer("val").as_default(step=global_step):
                    tf.summary.scalar("epoch_loss", val["loss"])
                    tf.summary.scalar("epoch_accuracy", val["accuracy"])
                self._log_alphas(global_step)
                for w in self._writers.values():
                    w.flush()
                self._write_epoch(epoch + 1, genotype, record, history)
                print(f"  val loss {val['loss']:.4f} acc {val['accuracy']:.4f} | "
                      f"genotype {genotype}", flush=True)
            self._save(epoch + 1, 0)
        return self.model.genotype()
