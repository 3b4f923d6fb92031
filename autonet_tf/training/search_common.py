"""What both DARTS searches (CNN and recurrent) share.

:class:`SearchCommon` is mixed into a search trainer that has ``model``
(with ``genotype()``, ``weight_variables`` and ``arch_variables``),
``config``, ``softmax_alphas()`` returning ``{"primitives": [...], <cell>:
rows, ...}`` and ``validate(epoch)``; it goes before the trainer base
(:class:`~autonet_tf.training.image_trainer.ImageTrainer` or
:class:`~autonet_tf.training.lm_trainer.LanguageModelTrainer`) in the bases.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from autonet_tf.io import run_dir
from autonet_tf.training.trainer import apply_summed
from autonet_tf.training.optimizers import MomentumSGD
from autonet_tf.training.precision import loss_scale, loss_scaled


#: keys of ``softmax_alphas()`` that are not a cell's op-weight rows
NOT_CELLS = ("primitives", "edges")


def alpha_decidedness(alphas: dict) -> dict:
    """How decided each cell's softmaxed alphas are, as history fields.

    ``alpha_entropy_<cell>``: mean entropy of an edge's op weights divided by
    log(#ops): 1.0 is uniform (undecided), 0.0 one op per edge.
    ``alpha_margin_<cell>``: mean gap between the best and second-best op of
    an edge, 'none' left out as in the genotype derivation: 0.0 means a tie.
    """
    names = list(alphas["primitives"])
    keep = [k for k, p in enumerate(names) if p != "none"]
    out = {}
    for cell, rows in alphas.items():
        if cell in NOT_CELLS:
            continue
        p = np.asarray(rows, np.float64)
        entropy = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1) / np.log(p.shape[1])
        best = np.sort(p[:, keep], axis=1)
        margin = best[:, -1] - best[:, -2] if len(keep) > 1 else best[:, -1]
        out[f"alpha_entropy_{cell}"] = round(float(entropy.mean()), 6)
        out[f"alpha_margin_{cell}"] = round(float(margin.mean()), 6)
    return out


class SearchCommon:
    """Both optimizers, per-epoch genotype/alpha files, alpha summaries, ``search()``.

    The trainer supplies ``validate(epoch)`` -> ``{"val_loss", "val_<metric>"}``.
    """

    def _init_optimizers(self, config, momentum: float) -> None:
        """Weights: MomentumSGD with coupled L2; alphas: Adam (call inside the strategy scope)."""
        self.weight_variables = self.model.weight_variables
        self.arch_variables = self.model.arch_variables
        self.weight_optimizer = loss_scaled(
            MomentumSGD(config.learning_rate, momentum, l2=config.weight_decay),
            config.mixed_precision)
        self.weight_optimizer.build(self.weight_variables)
        self.arch_optimizer = loss_scaled(keras.optimizers.Adam(
            config.arch_learning_rate, beta_1=config.arch_beta_1,
            beta_2=config.arch_beta_2, epsilon=1e-8), config.mixed_precision)
        self.arch_optimizer.build(self.arch_variables)

    def _apply_arch_gradients(self, arch_grads) -> None:
        """One Adam step of the alphas: the gradients (summed over replicas) plus
        ``arch_weight_decay * alpha``, as the reference's Adam weight decay."""
        decay = self.config.arch_weight_decay
        if decay:
            arch_grads = [g + decay * tf.convert_to_tensor(a.value)
                          for g, a in zip(arch_grads, self.arch_variables)]
        apply_summed(self.arch_optimizer, arch_grads, self.arch_variables, self.replicas)

    def _arch_loss_scale(self):
        """The loss scale of the architecture passes (None unless float16)."""
        return loss_scale(self.arch_optimizer)

    def end_epoch(self, epoch: int, global_step: int) -> dict:
        record = self.validate(epoch)
        record.update(alpha_decidedness(self.softmax_alphas()))
        if self.chief:
            self.log_alphas(global_step, record)
        return {**record, "genotype": self.genotype().to_dict()}

    def describe_epoch(self, record: dict) -> str:
        return f"{super().describe_epoch(record)} | genotype {self.genotype()}"

    def log_alphas(self, step: int, record: dict | None = None) -> None:
        """TensorBoard: op weights, how decided each cell is, an alpha heat map per cell."""
        alphas = self.softmax_alphas()
        with self.loop.writer("train").as_default(step=step):
            tf.summary.scalar("arch_learning_rate",
                              float(keras.ops.convert_to_numpy(self.arch_optimizer.learning_rate)))
            for key, value in (record or {}).items():
                if key.startswith(("alpha_entropy_", "alpha_margin_")):
                    kind, cell = key[len("alpha_"):].split("_", 1)
                    tf.summary.scalar(f"decided_{cell}/{kind}", value)
            for cell, rows in alphas.items():
                if cell in NOT_CELLS:
                    continue
                weights = np.asarray(rows)
                for k, op in enumerate(alphas["primitives"]):
                    tf.summary.scalar(f"alpha_{cell}/{op}", float(weights[:, k].mean()))
                # Heat map: one row per edge, one column per op, upscaled 8x;
                # stretched from the smallest to the largest weight, so the
                # small differences of an early search are visible.
                low, high = weights.min(), weights.max()
                scaled = (weights - low) / max(high - low, 1e-12)
                image = np.kron(scaled, np.ones((8, 8)))[None, :, :, None]
                tf.summary.image(f"alphas_{cell}", image.astype(np.float32))

    def write_epoch_outputs(self, epoch: int, record: dict) -> None:
        d = self.config.model_dir
        run_dir.write_json(os.path.join(d, "genotypes", f"epoch_{epoch:03d}.json"),
                           record["genotype"])
        run_dir.write_json(os.path.join(d, "alphas", f"epoch_{epoch:03d}.json"),
                           self.softmax_alphas())

    def genotype(self):
        """The genotype the alphas imply now (CNN: with --max_skip applied)."""
        max_skip = getattr(self.config, "max_skip", None)
        return self.model.genotype(max_skip) if max_skip is not None else self.model.genotype()

    def search(self):
        """Runs (or resumes) the search; returns the final genotype."""
        self.loop.run()
        return self.genotype()
