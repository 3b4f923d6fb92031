"""What every trainer (CNN/recurrent search, network training) is.

A :class:`Trainer` is built in one step: its constructor places itself on
the strategy (``strategy``, ``replicas``, ``chief``, ``batch_size``), builds
the model and optimizers and, last, its
:class:`~autonet_tf.training.controller.Controller` (``self.loop``), which
runs the epochs, checkpoints, logs and resumes. The trainer supplies the
steps and the per-epoch hooks the controller calls; the defaults here are
those most trainers share. Image trainers build on
:class:`~autonet_tf.training.image_trainer.ImageTrainer`, the recurrent ones
on :class:`~autonet_tf.training.lm_trainer.LanguageModelTrainer`.
"""

from __future__ import annotations

import tensorflow as tf

from autonet_tf.distribute.strategy import input_workers, is_chief
from autonet_tf.errors import UserInputError
from autonet_tf.training import precision
from autonet_tf.training.controller import Controller
from autonet_tf.training.precision import dtype_policy


def capped_steps(steps: int, cap: int | None, too_few: str) -> int:
    """Steps per epoch: ``steps`` capped by --max_steps_per_epoch (``cap``);
    ``too_few`` is the error when not one step fits."""
    if steps == 0:
        raise UserInputError(too_few)
    return min(steps, cap) if cap else steps


def apply_summed(optimizer, summed_grads, variables, replicas: int) -> None:
    """Applies gradients already summed over replicas with a Keras optimizer.

    Keras optimizers sum gradients across replicas themselves, so each
    replica hands over its share ``summed / replicas`` (re-scaled for a
    LossScaleOptimizer, :func:`precision.apply`).
    """
    precision.apply(optimizer, summed_grads, variables, 1.0 / replicas)


class Trainer:
    """The base of every trainer; see the module docstring.

    Args:
      config: the run config (``batch_size``, ``strategy`` and the loop's
        fields, :class:`~autonet_tf.configs.RuntimeConfig`).
      strategy: the tf.distribute strategy (default: the default strategy).
    """

    #: per-step metrics averaged over the epoch besides loss/accuracy
    extra_metrics: tuple[str, ...] = ()
    #: 'accuracy' or 'perplexity'
    metric: str = "accuracy"

    def __init__(self, config, strategy: tf.distribute.Strategy | None = None):
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = is_chief(self.strategy)
        self.workers = input_workers(self.strategy)  # input pipelines (multi-worker: hosts)
        self.batch_size = config.batch_size
        if config.batch_size % self.replicas:
            raise UserInputError(
                f"--batch_size={config.batch_size} must be divisible by the "
                f"{self.replicas} replicas of --strategy={config.strategy}")

    def _start_loop(self, steps_per_epoch: int, **trackables) -> None:
        """The last step of construction: the controller over ``trackables``."""
        self.loop = Controller(self, self.config, steps_per_epoch, **trackables)

    def reduce_sum(self, outputs: dict) -> dict:
        """Per-replica values summed over replicas (outside the replica function)."""
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in outputs.items()}

    def export_model(self):
        """The trained model for export: a float32 copy when trained in 16 bits."""
        if self.model.compute_dtype == "float32":
            return self.model
        with dtype_policy("float32"):
            copy = self._export_copy()
        copy.set_weights(self.model.get_weights())
        return copy

    def _export_copy(self):
        """A new, built model like ``self.model`` (under the current dtype policy)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    def begin_epoch(self, epoch: int) -> dict:
        raise NotImplementedError

    def epoch_iterators(self, epoch: int, skip: int) -> tuple:
        raise NotImplementedError

    def train_step(self, *iterators) -> dict:
        raise NotImplementedError

    def end_epoch(self, epoch: int, global_step: int) -> dict:
        """Returns at least ``val_loss`` and ``val_<metric>``."""
        raise NotImplementedError

    def loop_key(self):
        """What selects the traced step (a trainer whose step changes says so)."""
        return None

    def next_step_is_new(self) -> bool:
        """Whether the next ``train_step`` call traces a new graph (besides the first)."""
        return False

    def write_epoch_outputs(self, epoch: int, record: dict) -> None:
        """Chief only: files written after each epoch (besides history.jsonl)."""

    def describe_epoch(self, record: dict) -> str:
        if self.metric == "perplexity":
            return f"val loss {record['val_loss']:.4f} ppl {record['val_perplexity']:.2f}"
        return f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}"
