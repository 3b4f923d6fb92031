import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import stateless_training_step

from autonet_tf.models.cnn_search import MixedOp, SearchCell, SearchNetwork, reduction_layers
from autonet_tf.search_space import ops
from autonet_tf.search_space.genotypes import PRIMITIVES


@pytest.mark.parametrize("shape, classes", [((32, 32, 3), 10), ((28, 28, 1), 4), ((8, 8, 1), 3),
                                            ((7, 7, 3), 2)])
def test_search_network_runs_on_any_input_and_class_count(shape, classes):
    model = SearchNetwork(classes, init_channels=4, layers=3, seed=1)
    logits = model(tf.random.normal((2,) + shape), training=True)
    assert logits.shape == (2, classes)
    assert np.all(np.isfinite(logits.numpy()))


def test_arch_and_weight_variables_partition_the_trainable_variables():
    model = SearchNetwork(10, init_channels=4, layers=3)
    model(tf.zeros((1, 8, 8, 1)))
    arch = {id(v) for v in model.arch_variables}
    weights = {id(v) for v in model.weight_variables}
    everything = {id(v) for v in model.trainable_variables}
    assert arch and weights
    assert not arch & weights
    assert arch | weights == everything
    assert [tuple(v.shape) for v in model.arch_variables] == [(14, 8), (14, 8)]
    # BatchNorm inside cells has no affine parameters: the only gamma/beta
    # are the stem's.
    gammas = [v for v in model.weight_variables if v.name == "gamma"]
    assert len(gammas) == 1


@pytest.mark.slow
def test_parameter_count_matches_reference_search_network():
    # The reference train_search.py logs "param size = 1.930618MB" for the
    # CIFAR-10 supernet (C=16, 8 cells, alphas excluded).
    model = SearchNetwork(10, init_channels=16, layers=8)
    model(tf.zeros((1, 32, 32, 3)))
    assert sum(int(np.prod(v.shape)) for v in model.weight_variables) == 1930618
    assert reduction_layers(8) == (2, 5)


def test_alpha_initialisation_is_small_and_distinct():
    model = SearchNetwork(10, init_channels=4, layers=3, seed=3)
    a_n, a_r = (np.asarray(v) for v in model.arch_variables)
    assert 1e-4 < a_n.std() < 1e-2
    assert not np.allclose(a_n, a_r)


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("size", [8, 7])
def test_every_op_halves_spatial_size_on_stride_2(name, size):
    op = ops.make_op(name, 6, stride=2, affine=False, pool_bn=True)
    out = op(tf.random.normal((2, size, size, 6)), training=True)
    half = (size + 1) // 2
    assert out.shape == (2, half, half, 6)
    same = ops.make_op(name, 6, stride=1, affine=False)(tf.random.normal((2, size, size, 6)))
    assert same.shape == (2, size, size, 6)


def test_folded_strided_dilated_conv_equals_dilated_conv_then_stride():
    x = tf.random.normal((2, 9, 9, 3))
    for k in (3, 5):
        op = ops.DilConv(3, k, 2, stride=2, affine=False)
        op(x, training=False)
        depthwise = op.conv.depthwise_kernel
        pointwise = op.conv.pointwise_kernel
        pad = k - 1  # PyTorch padding = dilation * (k - 1) / 2
        padded = tf.pad(tf.nn.relu(x), [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        dense = tf.nn.depthwise_conv2d(padded, depthwise, [1, 1, 1, 1], "VALID",
                                       dilations=[2, 2])[:, ::2, ::2, :]
        expected = tf.nn.conv2d(dense, pointwise, 1, "VALID")
        bn = op.bn
        expected = (expected - bn.moving_mean) / tf.sqrt(bn.moving_variance + bn.epsilon)
        np.testing.assert_allclose(op(x, training=False), expected, atol=1e-5)


def test_average_pool_excludes_padding_and_max_pool_pads_with_minus_infinity():
    x = tf.ones((1, 4, 4, 1))
    avg = ops.Pool("avg", stride=2)(x)
    np.testing.assert_allclose(avg, np.ones((1, 2, 2, 1)))
    neg = -tf.ones((1, 4, 4, 1))
    np.testing.assert_allclose(ops.Pool("max", stride=2)(neg), -np.ones((1, 2, 2, 1)))
    # Reference alignment: window centres at 0 and 2 (padding 1 on both sides).
    ramp = tf.reshape(tf.range(16, dtype=tf.float32), (1, 4, 4, 1))
    out = ops.Pool("max", stride=2)(ramp)
    np.testing.assert_allclose(out[0, :, :, 0], [[5, 7], [13, 15]])


def test_fused_batch_norm_matches_keras_batch_norm():
    x = tf.random.normal((8, 5, 5, 3)) * 3 + 1
    ours = ops.BatchNorm(affine=True)
    theirs = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean, theirs.moving_mean, atol=1e-6)
    # Moving variance uses the unbiased batch variance, as PyTorch does.
    unbiased = np.var(x.numpy(), axis=(0, 1, 2), ddof=1)
    np.testing.assert_allclose(ours.moving_variance, 0.9 + 0.1 * unbiased, rtol=1e-5)


def test_mixed_op_skips_none_but_keeps_its_softmax_share():
    op = MixedOp(4, 1)
    x = tf.random.normal((2, 6, 6, 4))
    w = tf.nn.softmax(tf.random.normal((len(PRIMITIVES),)))
    out = op(x, w, training=True)
    manual = sum(w[k] * sub(x, training=True) for k, sub in zip(op.op_indices, op.candidate_ops))
    np.testing.assert_allclose(out, manual, atol=1e-5)
    assert len(op.candidate_ops) == len(PRIMITIVES) - 1


def test_cell_config_round_trip_rebuilds_the_same_structure():
    cell = SearchCell(8, reduction=True, reduction_prev=False, steps=3, multiplier=2)
    clone = SearchCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    model = SearchNetwork(5, init_channels=4, layers=4, steps=3, multiplier=2)
    rebuilt = SearchNetwork.from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()
    x = tf.zeros((1, 8, 8, 1))
    model(x)
    rebuilt(x)
    assert len(model.weight_variables) == len(rebuilt.weight_variables)


@pytest.mark.parametrize("sharing", ["inline", "call"])
@pytest.mark.slow
def test_shared_edge_traces_give_the_same_losses_gradients_and_statistics(sharing):
    x = tf.random.stateless_uniform((4, 8, 8, 3), [1, 2])
    y = tf.constant([0, 1, 2, 1])
    results = []
    for mode in ("off", sharing):
        keras.utils.set_random_seed(1)
        model = SearchNetwork(3, 4, 3, steps=2, multiplier=2, trace_sharing=mode)
        model(tf.zeros((1, 8, 8, 3)), training=False)
        step = stateless_training_step(model)
        loss, grads, state = step(x, y)
        results.append((loss, grads, state, model(x, training=False)))
        if mode != "off":
            # 3 cells (normal, reduce, reduce): distinct edges = stride-1 and
            # stride-2 edges per distinct cell shape, traced once each.
            assert 0 < len(model.shared_traces) < 3 * 5
    (l0, g0, s0, p0), (l1, g1, s1, p1) = results
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(g0 + s0, g1 + s1):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    moved = [s for s in s1 if np.abs(np.asarray(s)).max() > 0]
    assert moved  # BatchNorm statistics were updated through the shared functions
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)


def test_auto_trace_sharing_inlines_edges_on_images_of_16_pixels_and_more():
    from autonet_tf.models.cnn_search import pick_trace_sharing

    assert pick_trace_sharing("auto", (32, 32, 3), sync_bn=False, partial_channels=1) == "inline"
    assert pick_trace_sharing("auto", (16, 20, 1), sync_bn=False, partial_channels=1) == "inline"
    assert pick_trace_sharing("auto", (8, 8, 1), sync_bn=False, partial_channels=1) == "batched"
    # inline edges would become 'off' under synchronised BatchNorm; PC-DARTS is unmeasured
    assert pick_trace_sharing("auto", (32, 32, 3), sync_bn=True, partial_channels=1) == "batched"
    assert pick_trace_sharing("auto", (32, 32, 3), sync_bn=False, partial_channels=4) == "batched"
    for mode in ("batched", "inline", "call", "off"):
        assert pick_trace_sharing(mode, (8, 8, 1), sync_bn=False, partial_channels=1) == mode
    with pytest.raises(ValueError, match="trace_sharing must be one of"):
        SearchNetwork(3, 4, 3, trace_sharing="auto")  # resolved before the network is built
