"""Batched edges (the default) compute what edges run one by one compute."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import stateless_training_step

from autonet_tf.models import edge_batching
from autonet_tf.models.cnn_search import SearchNetwork


def _run(mode, pc_darts, x, y):
    keras.utils.set_random_seed(1)
    model = SearchNetwork(3, 4, 3, steps=3, multiplier=3, trace_sharing=mode,
                          alpha_init_scale=0.5, seed=3,
                          partial_channels=2 if pc_darts else 1, edge_normalization=pc_darts)
    model(tf.zeros((1, 9, 9, 3)), training=False)

    stateless_step = stateless_training_step(model)

    @tf.function(autograph=False)
    def stateful_step(x):  # assigns the BatchNorm statistics to the variables
        return model(x, training=True)

    loss, grads, state = stateless_step(x, y)
    stateful_step(x)
    stateful_step(x * 0.5)
    statistics = [np.asarray(v) for v in model.non_trainable_variables]
    return loss, grads, state, statistics, model(x, training=False), model


@pytest.mark.parametrize("pc_darts,grouped", [(False, True), (True, False)],
                         ids=["darts-grouped_conv", "pc_darts-matmul"])
def test_batched_edges_match_edge_by_edge(pc_darts, grouped, monkeypatch):
    # Both ways of running the k pointwise convolutions (the matrix product
    # is the path without oneDNN, where grouped convolutions have no gradient).
    monkeypatch.setattr(edge_batching, "GROUPED_CONVOLUTIONS", grouped)
    # 9x9 input: odd sizes through both reductions (stride-2 pools, FactorizedReduce).
    x = tf.random.stateless_uniform((4, 9, 9, 3), [1, 2])
    y = tf.constant([0, 1, 2, 1])
    l0, g0, s0, n0, p0, ref = _run("off", pc_darts, x, y)
    l1, g1, s1, n1, p1, model = _run("batched", pc_darts, x, y)
    assert model.count_params() == ref.count_params()
    assert [v.shape for v in model.variables] == [v.shape for v in ref.variables]
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    assert all(g is not None for g in g1)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    for a, b in zip(s0 + n0, s1 + n1):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    moved = [s for s in n1 if np.abs(s).max() > 0 and not np.allclose(s, 1.0)]
    assert len(moved) > len(n1) // 3  # statistics were updated by the batched edges
    np.testing.assert_allclose(p1, p0, rtol=1e-4, atol=1e-5)
    assert model.genotype() == ref.genotype()
