"""Building a trainer is seeded, and leaves the caller's random state alone."""

import random

import numpy as np
import tensorflow as tf

from autonet_tf.configs import TrainConfig
from autonet_tf.data import images
from autonet_tf.search_space import genotypes
from autonet_tf.seeding import seeded
from autonet_tf.training.network_trainer import NetworkTrainer


def test_seeded_restores_python_numpy_and_tensorflow_seeds():
    random.seed(11)
    np.random.seed(12)
    tf.random.set_seed(13)
    expected = (random.random(), np.random.rand())
    random.seed(11)
    np.random.seed(12)
    with seeded(3):
        assert tf.compat.v1.random.get_seed(0)[0] == 3
        inside = random.random()
    assert (random.random(), np.random.rand()) == expected
    assert tf.compat.v1.random.get_seed(0)[0] == 13
    with seeded(3):
        assert random.random() == inside  # the same draws for the same seed


def test_trainer_is_seeded_and_leaves_the_callers_state(tmp_path):
    data = images.load(TrainConfig().data, 0)

    def build(seed, d):
        config = TrainConfig(model_dir=str(tmp_path / d), genotype="DARTS_V2", layers=2,
                             init_channels=4, batch_size=16, seed=seed, progress=False)
        return NetworkTrainer(config, genotypes.DARTS_V2, data)

    random.seed(5)
    np.random.seed(6)
    first = build(1, "a")
    after = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(6)
    assert (random.random(), np.random.rand()) == after  # construction drew nothing
    same, other = build(1, "b"), build(2, "c")
    weights = [v.numpy() for v in first.model.trainable_variables]
    for a, b in zip(weights, [v.numpy() for v in same.model.trainable_variables]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b.numpy())
               for a, b in zip(weights, other.model.trainable_variables))
