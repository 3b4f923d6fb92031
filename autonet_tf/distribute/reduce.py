"""Cross-replica sums inside a replica context (identity on one replica)."""

from __future__ import annotations

import tensorflow as tf


def all_reduce_sum(values: list) -> list:
    """Sums tensors across replicas (identity outside a multi-replica context)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return list(values)
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(values))
