"""training/by_shape: per-shape arithmetic equals the per-tensor arithmetic."""

import numpy as np
import tensorflow as tf

from autonet_tf.training import by_shape

SHAPES = [(3, 3, 2, 1), (4,), (3, 3, 2, 1), (2, 5), (4,)]


def _tensors(seed, scale=3.0):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=s).astype(np.float32) * scale) for s in SHAPES]


def test_map_by_shape_keeps_the_order_and_applies_the_rule_per_element():
    a, b = _tensors(0), _tensors(1)
    total, difference = by_shape.map_by_shape(lambda x, y: (x + 2 * y, x - y), a, b)
    for x, y, t, d in zip(a, b, total, difference):
        np.testing.assert_array_equal(t, x + 2 * y)
        np.testing.assert_array_equal(d, x - y)
    graph = tf.function(lambda *t: by_shape.map_by_shape(lambda x: x * 2, list(t))
                        ).get_concrete_function(*a).graph
    assert [op.type for op in graph.get_operations()].count("Pack") == 3  # three shapes


def test_clip_by_global_norm_equals_tensorflows():
    for scale in (3.0, 0.01):  # clipped, and left alone
        tensors = _tensors(2, scale)
        want, want_norm = tf.clip_by_global_norm(tensors, 5.0)
        got, norm = by_shape.clip_by_global_norm(tensors, 5.0)
        np.testing.assert_allclose(norm, want_norm, rtol=1e-6)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    got, norm = by_shape.clip_by_global_norm([t * np.inf for t in _tensors(3)], 5.0)
    assert np.isinf(norm) and all(np.isnan(g).all() for g in got)  # as TensorFlow's
