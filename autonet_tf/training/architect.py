"""Architecture gradients of DARTS: first order and second order (unrolled).

The architect is generic over the model: it evaluates losses and gradients
at given weight and alpha tensors (:class:`StatelessGradients`), so the
virtual step ``w'`` and the finite-difference points ``w +- R v`` are plain
tensors: no variable is assigned and nothing needs restoring, which also
makes the step correct under tf.distribute (the trap of assigning mirrored
variables inside ``strategy.run`` never arises). BatchNorm moving statistics
are not updated by these extra passes; only the weight step updates them.

Losses are per-replica shares of the global-batch mean
(``tf.nn.compute_average_loss``), and every gradient is summed across
replicas before it is used, so one device and N replicas compute the same
numbers for the same global batch.

Second order (reference ``architect.py``):

1. ``w' = w - xi * (momentum * buf + grad_w L_train(w, a) + wd * w)``,
   ``xi`` = the current weight learning rate.
2. ``g_a = grad_a L_val(w', a)``, ``v = grad_w' L_val(w', a)``.
3. ``R = eps / ||v||``, ``h = (grad_a L_train(w + R v, a) - grad_a L_train(w - R v, a)) / (2 R)``.
4. ``grad_a = g_a - xi * h``.

``hessian='exact'`` replaces step 3 by the exact mixed derivative
``h = d/dt grad_a L_train(w + t v, a)`` at ``t = 0``, computed by double
backprop (``grad_a (grad_w L_train . v)``). The central difference at the
reference's epsilon steps across ReLU and max-pool kinks, so on real
supernets it can be far from ``h`` (see BUILD.md for measured errors).

The recurrent search (reference ``rnn/architect.py``) clips the training
gradient of the virtual step to the weights' clip norm (``virtual_clip``):
``w' = w - xi * (c * grad_w L_train + wd * w)`` with ``c = min(1, clip /
||grad||)`` held constant, so the implicit term becomes ``xi * c * h``. (The
reference multiplies by ``clip / ||grad||`` even when it exceeds 1, and also
clips ``v``; here ``c`` is capped at 1 and ``v`` is the exact gradient, so
the result is the derivative of the virtual step that is taken.)
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import tensorflow as tf

from autonet_tf.configs import HESSIANS
from autonet_tf.distribute.reduce import all_reduce_sum
from autonet_tf.models.shared_traces import frozen_weights, unshared
from autonet_tf.training.by_shape import clip_by_global_norm, global_norm, map_by_shape
from autonet_tf.training import precision

def _given(values, read):
    """``values`` as a list, or ``read()`` when None."""
    return read() if values is None else list(values)


#: TensorFlow's executor that runs a function's kernels one at a time
SEQUENTIAL_EXECUTOR = "SINGLE_THREADED_EXECUTOR"


class StatelessGradients:
    """Loss and gradients of a model evaluated at given weight/alpha tensors.

    ``self(weights, alphas, batch)`` returns ``(loss, grad_weights,
    grad_alphas, outputs, non_trainable)``, where ``non_trainable`` are the
    model's updated non-trainable values (BatchNorm statistics) after the
    forward pass. It runs ``model.stateless_call`` inside ONE ``tf.function``
    (optionally XLA-compiled): every pass of a search step (weight step,
    virtual step, validation pass, both finite-difference passes) calls the
    same traced graph, so tracing and compilation happen once instead of up
    to five times; outputs a pass does not use are pruned by Grappler.

    Args:
      model: a built Keras model whose trainable variables are exactly
        ``weight_variables`` + ``arch_variables`` (in any order).
      batch_loss: ``batch_loss(call, batch) -> (loss, outputs)`` where
        ``call(*inputs)`` returns the model outputs.
      weight_variables, arch_variables: the two disjoint variable lists.
      jit_compile: compile the pass with XLA.
      traced_once: wrap the pass in its own ``tf.function``. Must be False
        when the model synchronises across replicas inside the pass
        (synchronised BatchNorm under a multi-replica strategy): a nested
        ``tf.function`` cannot contain a cross-replica ``merge_call``.
    """

    def __init__(self, model, batch_loss: Callable, weight_variables, arch_variables,
                 jit_compile: bool = False, traced_once: bool = True):
        slots = {}
        for i, v in enumerate(weight_variables):
            slots[id(v)] = ("w", i)
        for i, v in enumerate(arch_variables):
            slots[id(v)] = ("a", i)
        if len(slots) != len(model.trainable_variables):
            raise ValueError("weight_variables and arch_variables must partition "
                             "model.trainable_variables")
        self._order = [slots[id(v)] for v in model.trainable_variables]
        self.model = model
        self.batch_loss = batch_loss
        def traced(method, attributes=None, **settings):
            fn = functools.partial(method, **settings)
            return (tf.function(fn, jit_compile=jit_compile, autograph=False,
                                experimental_attributes=attributes)
                    if traced_once else fn)

        self._fn = self._fn_alphas = traced(self._compute, weight_gradients=True)
        # Only edges kept as calls need to be told to skip their weight
        # gradients; inlined graphs are pruned by Grappler, and a second
        # traced variant would only lengthen the first step.
        if getattr(model, "trace_sharing", None) == "call":
            self._fn_alphas = traced(self._compute, weight_gradients=False)
        # Kept as calls, so that they run on the one-thread executor (see
        # second_derivative).
        self._products = {along: traced(self._product, {"_noinline": True}, along=along)
                          for along in ("weights", "alphas")}

    def non_trainable_values(self) -> list:
        """The model's non-trainable values (BatchNorm statistics) as tensors."""
        return [tf.convert_to_tensor(v.value) for v in self.model.non_trainable_variables]

    def loss(self, weights, alphas, batch, non_trainable=None):
        """(loss, outputs, updated non-trainable values) at the given tensors."""
        source = {"w": list(weights), "a": list(alphas)}
        trainable = [source[kind][i] for kind, i in self._order]
        if non_trainable is None:
            non_trainable = self.non_trainable_values()
        updated = []

        def call(*inputs, **kwargs):
            outputs, new_state = self.model.stateless_call(
                trainable, non_trainable, *inputs, training=True, **kwargs)
            updated[:] = new_state
            return outputs

        loss, outputs = self.batch_loss(call, batch)
        return loss, outputs, updated

    def _compute(self, weights, alphas, batch, non_trainable, loss_scale,
                 weight_gradients=True):
        """Loss, gradients, outputs and updated state; without weight gradients (None)
        the pass runs under ``frozen_weights()`` so called edges skip them too."""
        frozen = contextlib.nullcontext() if weight_gradients else frozen_weights()
        sources = (weights, alphas) if weight_gradients else ((), alphas)
        with tf.GradientTape() as tape, frozen:
            tape.watch(sources)
            loss, outputs, updated = self.loss(weights, alphas, batch, non_trainable)
            scaled = precision.scale_loss(loss, loss_scale)
        g_w, g_a = tape.gradient(scaled, sources,
                                 unconnected_gradients=tf.UnconnectedGradients.ZERO)
        g_w = precision.unscale(g_w, loss_scale) if weight_gradients else None
        return loss, g_w, precision.unscale(g_a, loss_scale), outputs, updated

    def _product(self, weights, alphas, vector, batch, non_trainable, loss_scale, along):
        """d/dt grad_a L at (w + t v, a) or (w, a + t v), t = 0, by double backprop.

        ``grad_a (grad_x L . v)`` with x the weights or the alphas, every edge
        traced on its own
        (:func:`~autonet_tf.models.shared_traces.unshared`): through the
        shared edge functions TensorFlow returns wrong second derivatives in
        float32 (checked against nested tapes).
        """
        zero = tf.UnconnectedGradients.ZERO
        inner_sources = weights if along == "weights" else alphas
        with tf.GradientTape() as outer, unshared():
            outer.watch(alphas)
            with tf.GradientTape() as tape:
                tape.watch(inner_sources)
                loss, _, _ = self.loss(weights, alphas, batch, non_trainable)
                scaled = precision.scale_loss(loss, loss_scale)
            inner = tape.gradient(scaled, inner_sources, unconnected_gradients=zero)
            dot = tf.add_n([tf.reduce_sum(g * tf.cast(v, g.dtype))
                            for g, v in zip(inner, vector)])
        product = outer.gradient(dot, alphas, unconnected_gradients=zero)
        return precision.unscale(product, loss_scale)

    def second_derivative(self, weights, alphas, vector, batch, loss_scale=None,
                          along: str = "weights", non_trainable=None):
        """An exact Hessian-vector product of the loss (no finite difference).

        ``along='weights'``: the mixed term ``grad_a grad_w L . v`` (``v``
        like the weights) that the second-order architect needs;
        ``along='alphas'``: ``grad_a grad_a L . v`` (``v`` like the alphas),
        the alpha Hessian the collapse guard watches. No step size to choose
        (a finite difference steps across ReLU and max-pool kinks).
        """
        # The double-backprop graph runs one kernel at a time: with TensorFlow's
        # parallel executor about 1 in 10 products came out wrong (0.1-0.5
        # relative error, on 2 CPU cores, oneDNN on or off), never with one
        # inter-op thread or this executor (0 of 160; same speed here).
        with tf.experimental.function_executor_type(SEQUENTIAL_EXECUTOR):
            return self._products[along](list(weights), list(alphas), list(vector), batch,
                                         _given(non_trainable, self.non_trainable_values),
                                         loss_scale)

    def __call__(self, weights, alphas, batch, loss_scale=None, weight_gradients=True,
                 non_trainable=None):
        """``loss_scale``: differentiate ``loss * loss_scale`` (float16), return true gradients.

        ``weight_gradients=False``: the caller does not use the weight
        gradients (they may be None, or pruned from the graph).
        ``non_trainable``: the BatchNorm statistics the caller has read already
        (each read is a graph node per variable); None reads them.
        """
        fn = self._fn if weight_gradients else self._fn_alphas
        return fn(list(weights), list(alphas), batch,
                  _given(non_trainable, self.non_trainable_values), loss_scale)


class Architect:
    """Computes grad_alpha of the validation loss, first or second order.

    Args:
      gradients: a :class:`StatelessGradients` of the model.
      weight_variables, arch_variables: the variables behind its ``weights``
        and ``alphas``.
      weight_optimizer: the :class:`~autonet_tf.training.optimizers.MomentumSGD`
        of the weights; its learning rate, momentum buffers and L2 define the
        virtual step.
      order: 'first' or 'second'.
      epsilon: R = epsilon / ||v|| (reference: 0.01) of the finite difference.
      hessian: how second order gets the Hessian-vector product:
        'finite_difference' (the reference's central difference, two
        gradient passes) or 'exact' (double backprop).
      virtual_clip: clip norm of the training gradient in the virtual step
        (recurrent search: the weights' clip, 0.25); None: no clipping (CNN).
      loss_scale: a callable returning the loss scale of the passes (float16:
        the alpha LossScaleOptimizer's), or None.
    """

    def __init__(self, gradients: StatelessGradients, weight_variables, arch_variables,
                 weight_optimizer, order: str = "first", epsilon: float = 0.01,
                 virtual_clip: float | None = None, loss_scale=None,
                 hessian: str = "finite_difference"):
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        if hessian not in HESSIANS:
            raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}")
        self.hessian = hessian
        self.grads = gradients
        self.weight_variables = list(weight_variables)
        self.arch_variables = list(arch_variables)
        self.weight_optimizer = precision.base_optimizer(weight_optimizer)
        self.order = order
        self.loss_scale = loss_scale or (lambda: None)
        self.epsilon = epsilon
        self.virtual_clip = virtual_clip

    def values(self):
        """Current (weights, alphas) as tensors."""
        return self.weight_values(), self.alpha_values()

    def weight_values(self) -> list:
        return [tf.convert_to_tensor(v.value) for v in self.weight_variables]

    def alpha_values(self) -> list:
        return [tf.convert_to_tensor(v.value) for v in self.arch_variables]

    def virtual_weights(self, weights, grad_weights, learning_rate):
        """w' = w - xi (momentum * buf + grad_w L_train + wd * w) (no assignment)."""
        opt = self.weight_optimizer
        buffers = [tf.convert_to_tensor(opt.momentum_buffer(var)) for var in self.weight_variables]
        return map_by_shape(lambda w, g, buf: opt.rule(w, g, buf, learning_rate)[1],
                            list(weights), list(grad_weights), buffers)

    def gradients(self, train_batch, val_batch, weights=None, non_trainable=None):
        """Returns (validation loss, alpha gradients summed over replicas, outputs).

        ``outputs`` are the model outputs of the validation pass (at ``w``
        for first order, at ``w'`` for second order), e.g. the next hidden
        state of a recurrent model. ``weights``, ``non_trainable``: the
        current weights and BatchNorm statistics when the caller has read
        them already (the weight step that follows reuses them: the
        architecture step changes neither); None reads them.
        """
        alphas = self.alpha_values()
        weights = _given(weights, self.weight_values)
        non_trainable = _given(non_trainable, self.grads.non_trainable_values)
        scale = self.loss_scale()
        if self.order == "first":
            loss, _, g_alpha, outputs, _ = self.grads(weights, alphas, val_batch, scale,
                                                      weight_gradients=False,
                                                      non_trainable=non_trainable)
            return loss, all_reduce_sum(g_alpha), outputs
        lr = tf.convert_to_tensor(self.weight_optimizer.learning_rate)
        _, g_train, _, _, _ = self.grads(weights, alphas, train_batch, scale,
                                         non_trainable=non_trainable)
        g_train = all_reduce_sum(g_train)
        step = lr
        if self.virtual_clip:
            g_train, norm = clip_by_global_norm(g_train, self.virtual_clip)
            step = lr * tf.cast(self.virtual_clip / tf.maximum(norm, self.virtual_clip),
                                lr.dtype)
        unrolled = self.virtual_weights(weights, g_train, lr)
        val_loss, v, g_alpha, outputs, _ = self.grads(unrolled, alphas, val_batch, scale,
                                                      non_trainable=non_trainable)
        reduced = all_reduce_sum(list(g_alpha) + list(v))
        g_alpha, v = reduced[:len(alphas)], reduced[len(alphas):]
        hessian = self.hessian_vector_product(weights, alphas, v, train_batch, scale,
                                              non_trainable)
        return (val_loss, [g - tf.cast(step, g.dtype) * h for g, h in zip(g_alpha, hessian)],
                outputs)

    def hessian_vector_product(self, weights, alphas, vector, train_batch, loss_scale=None,
                               non_trainable=None):
        """grad_alpha grad_w L_train times ``vector``, summed over replicas.

        'finite_difference': ``(grad_a L(w + R v) - grad_a L(w - R v)) / (2 R)``,
        ``R = eps / ||v||``; 'exact': double backprop.
        """
        if self.hessian == "exact":
            return all_reduce_sum(self.grads.second_derivative(
                weights, alphas, vector, train_batch, loss_scale, non_trainable=non_trainable))
        norm = global_norm(vector)
        radius = self.epsilon / tf.maximum(norm, 1e-12)
        def points(w, v):
            step = tf.cast(radius, w.dtype) * v
            return w + step, w - step

        plus, minus = map_by_shape(points, list(weights), list(vector))
        _, _, g_plus, _, _ = self.grads(plus, alphas, train_batch, loss_scale,
                                        weight_gradients=False, non_trainable=non_trainable)
        _, _, g_minus, _, _ = self.grads(minus, alphas, train_batch, loss_scale,
                                         weight_gradients=False, non_trainable=non_trainable)
        g_plus, g_minus = all_reduce_sum(g_plus), all_reduce_sum(g_minus)
        return [(p - m) / tf.cast(2.0 * radius, p.dtype) for p, m in zip(g_plus, g_minus)]
