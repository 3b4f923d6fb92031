"""Networks built from genotypes: parameter counts, auxiliary head, drop path, ImageNet stem."""

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.models.cnn_eval import Cell, NetworkImageNet, build_network, drop_path
from autonet_tf.search_space.genotypes import DARTS_V1, DARTS_V2, Genotype
from autonet_tf.search_space.ops import Identity


@pytest.mark.parametrize("genotype, expected", [
    # Reference model.py + utils.count_parameters_in_MB (auxiliary excluded):
    # DARTS_V2 prints "param size = 3.349342MB".
    (DARTS_V2, 3_349_342),
    (DARTS_V1, 3_169_414),
])
def test_cifar_network_parameter_count_matches_reference(genotype, expected):
    model = build_network("cifar", genotype, 10, (32, 32, 3), init_channels=36, layers=20)
    assert model.count_parameters() == expected
    aux = sum(int(np.prod(v.shape)) for v in model.auxiliary_head.trainable_variables)
    total = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert aux > 0 and total == expected + aux
    assert len(model.cells) == 20
    assert [i for i, c in enumerate(model.cells) if c.reduction] == [6, 13]


def test_auxiliary_head_only_in_training_and_switchable():
    x = tf.random.uniform((3, 16, 16, 3))
    with_aux = build_network("cifar", DARTS_V2, 5, (16, 16, 3), init_channels=4, layers=5)
    logits, aux = with_aux(x, training=True)
    assert logits.shape == aux.shape == (3, 5)
    assert with_aux(x, training=False).shape == (3, 5)  # inference: no auxiliary output
    without = build_network("cifar", DARTS_V2, 5, (16, 16, 3), init_channels=4, layers=5,
                            auxiliary=False)
    assert without.auxiliary_head is None
    out = without(x, training=True)
    assert isinstance(out, tf.Tensor) and out.shape == (3, 5)
    # The head is the only difference in trainable parameters.
    assert without.count_parameters() == with_aux.count_parameters()
    assert len(with_aux.trainable_variables) > len(without.trainable_variables)


def test_drop_path_drops_whole_examples_and_keeps_the_mean():
    x = tf.ones((20000, 2, 2, 3))
    y = drop_path(x, tf.constant(0.3)).numpy()
    per_example = y.reshape(len(y), -1)
    # Every example is either all zeros or all 1/0.7.
    assert np.all((per_example == 0).all(1) | np.isclose(per_example, 1 / 0.7).all(1))
    assert abs((per_example[:, 0] == 0).mean() - 0.3) < 0.02
    assert abs(y.mean() - 1.0) < 0.03


def test_drop_path_follows_the_probability_and_spares_identity_ops():
    x = tf.random.uniform((4, 8, 8, 6))
    model = build_network("cifar", DARTS_V2, 3, (8, 8, 6), init_channels=4, layers=3,
                          auxiliary=False)
    model.drop_path_prob.assign(0.0)
    a, b = model(x, training=True), model(x, training=True)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    model.drop_path_prob.assign(0.5)
    c = model(x, training=True)
    assert np.abs(c.numpy() - a.numpy()).max() > 1e-3
    np.testing.assert_allclose(model(x, training=False).numpy(),
                               model(x, training=False).numpy())  # never in inference
    # A cell made only of identities (stride-1 skip connections) is untouched.
    skips = [("skip_connect", 0), ("skip_connect", 1)] * 4
    genotype = Genotype(skips, [2, 3, 4, 5], DARTS_V2.reduce, [2, 3, 4, 5])
    cell = Cell(genotype, 4, reduction=False, reduction_prev=False)
    assert all(isinstance(op, Identity) for op in cell.ops)
    s = tf.random.uniform((4, 8, 8, 4))
    cell(s, s, tf.constant(0.0), training=False)
    kept = cell(s, s, tf.constant(0.0), training=True)
    dropped = cell(s, s, tf.constant(0.9), training=True)
    np.testing.assert_allclose(kept.numpy(), dropped.numpy())


def test_imagenet_network_has_the_two_stage_stem():
    model = build_network("imagenet", DARTS_V2, 7, (64, 64, 3), init_channels=8, layers=3)
    assert isinstance(model, NetworkImageNet)
    x = tf.random.uniform((2, 64, 64, 3))
    logits, aux = model(x, training=True)
    assert logits.shape == aux.shape == (2, 7)
    s0, s1 = model.stem(x)
    assert s0.shape == (2, 16, 16, 8) and s1.shape == (2, 8, 8, 8)
    # The first cell reads a reduced s0, so it preprocesses it with FactorizedReduce.
    assert model.cells[0].reduction_prev
    assert not model.auxiliary_head.second_bn  # as the reference (no BN after conv 2)
