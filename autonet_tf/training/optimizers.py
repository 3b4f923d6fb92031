"""Optimizers with the update rules the DARTS reference uses (PyTorch semantics).

Keras' SGD keeps ``v = m * v - lr * g`` and applies decoupled weight decay;
PyTorch's keeps ``buf = m * buf + (g + wd * w)`` and steps ``w -= lr * buf``.
The two differ whenever the learning rate changes, and DARTS' second-order
virtual step reads the PyTorch momentum buffer, so the weight optimizer here
is a Keras optimizer with the PyTorch rule. Gradient clipping and the
cross-replica all-reduce are done by the caller (see ``training.steps``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from autonet_tf.training.by_shape import any_sparse, map_by_shape


class MomentumSGD(keras.optimizers.Optimizer):
    """SGD with heavy-ball momentum and coupled (L2) weight decay.

    ``buf = momentum * buf + (grad + l2 * w)``; ``w -= lr * buf``.

    Args:
      learning_rate: float or schedule.
      momentum: heavy-ball momentum (DARTS: 0.9).
      l2: coupled weight decay added to the gradient (DARTS: 3e-4).
    """

    def __init__(self, learning_rate=0.025, momentum: float = 0.9, l2: float = 0.0,
                 name: str = "momentum_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        self.momentum = momentum
        self.l2 = l2

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def momentum_buffer(self, variable):
        """The momentum buffer of ``variable`` (zeros before the first step)."""
        return self.momentums[self._get_variable_index(variable)]

    def rule(self, weights, gradient, buffer, learning_rate):
        """PyTorch's rule on values: ``(new buffer, new weights)``; nothing is assigned.

        The one rule of the per-variable and grouped updates and of the
        second-order virtual step (``Architect.virtual_weights``).
        """
        dtype = weights.dtype
        gradient = tf.cast(gradient, dtype)
        if self.l2:
            gradient = gradient + tf.cast(self.l2, dtype) * weights
        buffer = tf.cast(self.momentum, dtype) * buffer + gradient
        return buffer, weights - tf.cast(learning_rate, dtype) * buffer

    def update_step(self, gradient, variable, learning_rate):
        buf = self.momentum_buffer(variable)
        new_buffer, new_weights = self.rule(tf.convert_to_tensor(variable), gradient,
                                            tf.convert_to_tensor(buf), learning_rate)
        self.assign(buf, new_buffer)
        self.assign(variable, new_weights)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """Updates the variables of each shape together (one replica, dense gradients).

        :meth:`rule` on the variables, gradients and momentum buffers of one
        shape stacked into one tensor, then unstacked and assigned: about 4
        graph nodes per variable instead of about 14 (a supernet has over a
        thousand variables in a few dozen shapes), and a few kernels per
        shape instead of several per variable. Results agree with the
        per-variable path to float rounding (Grappler may rewrite the two
        graphs' sums differently). Several replicas take Keras' path (the
        gradients summed across replicas, then one cross-replica update),
        whose update is grouped the same way on each device
        (:meth:`_distributed_tf_update_step`); sparse gradients are updated
        variable by variable.
        """
        variables = list(trainable_variables)
        if not self._fusable(grads):
            return super()._backend_update_step(grads, variables, learning_rate)
        self._grouped_update(list(grads), learning_rate, variables,
                             [self.momentum_buffer(v) for v in variables])

    def _grouped_update(self, grads, learning_rate, variables, buffers):
        """:meth:`rule` per shape on the stacked values of ``variables`` and their
        momentum ``buffers``, then the new values assigned to both."""
        new_buffers, new_weights = map_by_shape(
            lambda w, g, b: self.rule(w, g, b, learning_rate),
            [tf.convert_to_tensor(v) for v in variables], grads,
            [tf.convert_to_tensor(b) for b in buffers])
        for targets, values in ((buffers, new_buffers), (variables, new_weights)):
            for target, value in zip(targets, values):
                target.assign(value)

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """The cross-replica update of several replicas, grouped by shape on each device.

        Keras updates every variable on its own (``extended.update`` per
        variable and device: about 14 graph nodes each, per replica). Here
        each device's copies of the variables and buffers are updated by
        :meth:`_grouped_update` with that device's (already summed)
        gradients, as on one device: every replica computes the same values.
        """
        grads = [g for g, _ in grads_and_vars]
        if not self._groupable(grads):
            return super()._distributed_tf_update_step(distribution, grads_and_vars,
                                                       learning_rate)
        variables = [v for _, v in grads_and_vars]
        buffers = [self.momentum_buffer(v).value for v in variables]

        def on_device(value, i):
            copies = distribution.experimental_local_results(value)
            return copies[i] if len(copies) > 1 else copies[0]

        for i, device in enumerate(distribution.extended.worker_devices):
            with tf.device(device):
                self._grouped_update([on_device(g, i) for g in grads],
                                     on_device(learning_rate, i),
                                     [on_device(v, i) for v in variables],
                                     [on_device(b, i) for b in buffers])

    @staticmethod
    def _groupable(grads) -> bool:
        """Whether the grouped update applies: several variables, dense gradients."""
        return len(grads) > 1 and not any_sparse(grads)

    def _fusable(self, grads) -> bool:
        """One replica and :meth:`_groupable` (several replicas: see
        :meth:`_distributed_tf_update_step`)."""
        context = tf.distribute.get_replica_context()
        return (context is not None and context.num_replicas_in_sync == 1
                and self._groupable(list(grads)))

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, l2=self.l2)
        return config


def cosine_learning_rate(epoch: int, epochs: int, base: float, minimum: float) -> float:
    """PyTorch ``CosineAnnealingLR(T_max=epochs, eta_min=minimum)`` at ``epoch``."""
    import math

    return minimum + 0.5 * (base - minimum) * (1.0 + math.cos(math.pi * epoch / epochs))
