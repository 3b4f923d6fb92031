"""Training a discovered network from scratch under a tf.distribute strategy.

:class:`NetworkTrainer` runs the reference ``train.py`` recipe on an
:class:`~autonet_tf.models.cnn_eval.NetworkCIFAR` (or ImageNet) network:
momentum SGD (PyTorch rule, coupled weight decay) with a per-epoch cosine
learning rate, gradient-norm clip after the cross-replica sum, the auxiliary
loss weighted by ``auxiliary_weight``, drop path ``drop_path_prob * epoch /
epochs``, random crop + flip and cutout. After each epoch it evaluates the
test split in inference mode. Checkpoints, resume, TensorBoard and history
come from its :class:`~autonet_tf.training.controller.Controller`.
"""

from __future__ import annotations

import tensorflow as tf

from autonet_tf.configs import TrainConfig
from autonet_tf.data.images import ImageDataset
from autonet_tf.errors import UserInputError
from autonet_tf.models.cnn_eval import build_network
from autonet_tf.search_space.genotypes import Genotype
from autonet_tf.distribute.reduce import all_reduce_sum
from autonet_tf.seeding import seeded
from autonet_tf.training import by_shape
from autonet_tf.training.image_trainer import ImageTrainer
from autonet_tf.training.losses import count_correct, smoothed_ce
from autonet_tf.training.trainer import apply_summed, capped_steps
from autonet_tf.training.optimizers import MomentumSGD, cosine_learning_rate
from autonet_tf.training import precision
from autonet_tf.training.precision import dtype_policy

# Smallest input the CIFAR network takes: three halvings must leave >= 1 pixel.
_MIN_SIZE = {"cifar": 4, "imagenet": 32}


def network_kind(config: TrainConfig, input_shape) -> str:
    """'cifar' or 'imagenet'; 'auto' picks the ImageNet stem for inputs of 128 pixels and up."""
    kind = config.network
    if kind == "auto":
        kind = "imagenet" if min(input_shape[:2]) >= 128 else "cifar"
    if min(input_shape[:2]) < _MIN_SIZE[kind]:
        raise UserInputError(
            f"--dataset={config.data.dataset!r}: images of {input_shape[0]}x{input_shape[1]} "
            f"are too small for the {kind} network (at least {_MIN_SIZE[kind]}x"
            f"{_MIN_SIZE[kind]}); use --image_size for image folders")
    return kind


class NetworkTrainer(ImageTrainer):
    """Trains ``genotype``'s network on ``dataset``; see the module docstring."""

    def __init__(self, config: TrainConfig, genotype: Genotype, dataset: ImageDataset,
                 strategy: tf.distribute.Strategy | None = None):
        super().__init__(config, strategy)
        self.genotype = genotype
        self.dataset = dataset
        self.kind = network_kind(config, dataset.input_shape)
        steps = capped_steps(
            len(dataset.x_train) // config.batch_size, config.max_steps_per_epoch,
            f"--batch_size={config.batch_size} is larger than the training split "
            f"({len(dataset.x_train)} images)")
        self.augment = {"on": True, "off": False}.get(config.data.augment, dataset.natural)
        # The ImageNet network trains as train_imagenet.py: random resized crops
        # and colour jitter instead of padded crops.
        self.recipe = "imagenet" if self.kind == "imagenet" else "cifar"
        self.extra_metrics = ("aux_loss",) if config.auxiliary else ()
        self.extra_metrics += ("grad_norm",)

        with seeded(config.seed), self.strategy.scope(), dtype_policy(config.mixed_precision):
            self.model = self._build(sync_bn=config.sync_batchnorm and self.replicas > 1)
            self.optimizer = precision.loss_scaled(
                MomentumSGD(config.learning_rate, config.momentum, l2=config.weight_decay),
                config.mixed_precision)
            self.optimizer.build(self.model.trainable_variables)
        self.parameters = self.model.count_parameters()
        self._start_loop(steps, model=self.model, optimizer=self.optimizer)
        self.train_step = tf.function(self._train_step, autograph=False,
                                      jit_compile=config.jit_compile and not self.model.sync_bn)
        self.eval_step = self.make_eval_step(self.model)

    def _build(self, sync_bn: bool):
        cfg = self.config
        return build_network(
            self.kind, self.genotype, self.dataset.num_classes, self.dataset.input_shape,
            init_channels=cfg.init_channels, layers=cfg.layers, auxiliary=cfg.auxiliary,
            sync_bn=sync_bn, name=f"network_{self.kind}")

    def _export_copy(self):
        copy = self._build(sync_bn=False)
        copy(tf.zeros((1,) + tuple(self.dataset.input_shape)), training=False)
        return copy

    # ------------------------------------------------------------------ steps
    def _replica_step(self, batch):
        cfg = self.config
        x, y = batch
        variables = self.model.trainable_variables

        def mean(losses):
            return tf.nn.compute_average_loss(losses, global_batch_size=cfg.batch_size)

        # Drop-path masks from (seed, step, replica): a resumed run draws the same.
        seed = tf.stack([tf.constant(cfg.seed, tf.int64),
                         tf.cast(self.optimizer.iterations, tf.int64)])
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(seed, replica)
        with tf.GradientTape() as tape:
            outputs = self.model(x, training=True, seed=seed)
            logits, aux_logits = outputs if cfg.auxiliary else (outputs, None)
            loss = mean(smoothed_ce(y, logits, cfg.label_smoothing))
            total = loss
            if aux_logits is not None:
                aux_loss = mean(smoothed_ce(y, aux_logits, cfg.label_smoothing))
                total = loss + cfg.auxiliary_weight * aux_loss
            scale = precision.loss_scale(self.optimizer)
            total = precision.scale_loss(total, scale)
        grads = all_reduce_sum(precision.unscale(tape.gradient(total, variables), scale))
        grads, norm = by_shape.clip_by_global_norm(grads, cfg.grad_clip)
        apply_summed(self.optimizer, grads, variables, self.replicas)
        out = {"loss": loss, "correct": count_correct(y, logits),
               **precision.norm_metrics(norm, self.optimizer, self.replicas)}
        if aux_logits is not None:
            out["aux_loss"] = aux_loss
        return out

    def _train_step(self, iterator):
        return self.reduce_sum(self.strategy.run(self._replica_step, args=(next(iterator),)))

    # ------------------------------------------------------------------- data
    def epoch_iterators(self, epoch: int, skip: int = 0) -> tuple:
        d = self.dataset
        return (iter(self.distributed_batches(
            d.x_train, d.y_train, epoch, skip=skip, augment=self.augment,
            cutout_length=self.config.cutout_length, mean=d.mean, std=d.std,
            shape=d.input_shape, recipe=self.recipe)),)

    def evaluate(self) -> dict:
        """Loss and accuracy (inference mode) on the test split."""
        d = self.dataset
        return self.evaluate_batches(
            self.eval_step,
            lambda: self.distributed_batches(d.x_test, d.y_test, 0, shuffle=False,
                                             drop_remainder=False, mean=d.mean, std=d.std,
                                             shape=d.input_shape, recipe=self.recipe),
            len(d.x_test))

    # ------------------------------------------------------------------ hooks
    def begin_epoch(self, epoch: int) -> dict:
        cfg = self.config
        if cfg.lr_schedule == "exponential":  # train_imagenet.py: StepLR(1, gamma)
            lr = cfg.learning_rate * cfg.lr_decay ** epoch
        else:
            lr = cosine_learning_rate(epoch, cfg.epochs, cfg.learning_rate,
                                      cfg.learning_rate_min)
        self.optimizer.learning_rate.assign(lr)
        drop = cfg.drop_path_prob * epoch / cfg.epochs
        self.model.drop_path_prob.assign(drop)
        return {"learning_rate": lr, "drop_path_prob": drop}

    def end_epoch(self, epoch: int, global_step: int) -> dict:
        val = self.evaluate()
        return {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}

    def train(self) -> dict:
        """Runs (or resumes) training; returns the final test loss and accuracy."""
        history = self.loop.run()
        if history and history[-1]["epoch"] == self.config.epochs:
            return {"loss": history[-1]["val_loss"], "accuracy": history[-1]["val_accuracy"]}
        return self.evaluate()
