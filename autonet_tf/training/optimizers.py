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
from keras import ops


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

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2:
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        buf = self.momentum_buffer(variable)
        self.assign(buf, ops.cast(self.momentum, variable.dtype) * buf + gradient)
        self.assign_sub(variable, lr * buf)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, l2=self.l2)
        return config


def cosine_learning_rate(epoch: int, epochs: int, base: float, minimum: float) -> float:
    """PyTorch ``CosineAnnealingLR(T_max=epochs, eta_min=minimum)`` at ``epoch``."""
    import math

    return minimum + 0.5 * (base - minimum) * (1.0 + math.cos(math.pi * epoch / epochs))
