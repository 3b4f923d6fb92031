"""What the image trainers (CNN search, network training) share.

:class:`ImageTrainer` adds to :class:`~autonet_tf.training.trainer.Trainer`
the deterministic distributed image batches (in memory or streamed from
files) and the inference pass that sums loss and correct predictions; the
recurrent trainers have :class:`~autonet_tf.training.lm_trainer.LanguageModelTrainer`
instead.
"""

from __future__ import annotations

import math

import tensorflow as tf

from autonet_tf.data import pipeline
from autonet_tf.training.losses import count_correct, sparse_ce
from autonet_tf.training.trainer import Trainer


class ImageTrainer(Trainer):
    """A trainer on images (metric: accuracy)."""

    def distributed_batches(self, x, y, epoch: int, *, skip: int = 0, shuffle: bool = True,
                            drop_remainder: bool = True, salt: int = 0,
                            augment: bool = False, cutout_length: int = 0, mean, std,
                            shape=None, recipe: str = "cifar"):
        """A distributed ``tf.data`` epoch, deterministic in (seed, salt, epoch).

        ``x`` holds images, file paths or records that the pipeline reads and
        decodes to ``shape`` (streamed sources). Under a multi-worker
        strategy the training batches come from one pipeline per worker that
        reads and decodes only that worker's slice of every global batch;
        evaluation passes (partial last batch) are sharded by tf.distribute.
        """
        def batches(shard=None):
            return pipeline.image_batches(
                x, y, self.batch_size, mean=mean, std=std,
                seed=self.config.seed * 1000 + salt, epoch=epoch, shuffle=shuffle,
                augment=augment and shuffle, cutout_length=cutout_length if shuffle else 0,
                skip_batches=skip, drop_remainder=drop_remainder, shape=shape, recipe=recipe,
                shard=shard)

        if drop_remainder and self.workers > 1:
            def per_worker(context):
                ds = batches((context.input_pipeline_id, context.num_input_pipelines))
                return ds.rebatch(context.get_per_replica_batch_size(self.batch_size))

            return self.strategy.distribute_datasets_from_function(per_worker)
        ds = batches()
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(ds.with_options(options))

    def make_eval_step(self, model):
        """A ``tf.function(iterator)`` summing loss, correct and count of one batch."""
        def replica(x, y):
            logits = model(x, training=False)
            return {"loss": tf.reduce_sum(sparse_ce(y, logits)),
                    "correct": count_correct(y, logits),
                    "count": tf.cast(tf.size(y), tf.float32)}

        def step(iterator):
            return self.reduce_sum(self.strategy.run(replica, args=next(iterator)))

        return tf.function(step, autograph=False)

    def evaluate_batches(self, eval_step, make_dataset, count: int) -> dict:
        """Mean loss and accuracy of ``eval_step`` over ``count`` examples."""
        totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
        iterator = iter(make_dataset())
        # The iterator (not its batches) is the tf.function argument, so the
        # last partial batch does not trigger a second trace.
        for _ in range(math.ceil(count / self.batch_size)):
            for k, v in eval_step(iterator).items():
                totals[k] += float(v)
        n = max(totals["count"], 1.0)
        return {"loss": totals["loss"] / n, "accuracy": totals["correct"] / n}
