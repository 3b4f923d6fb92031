"""The search step under MirroredStrategy on 2 logical CPUs equals one device."""

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.configs import SearchConfig
from autonet_tf.data import images
from autonet_tf.training.search_trainer import SearchTrainer


def _train(strategy, order, tmp_path, steps=2):
    config = SearchConfig(model_dir=str(tmp_path), order=order, epochs=1, batch_size=16,
                          layers=2, init_channels=4, steps=2, multiplier=2,
                          max_steps_per_epoch=steps, progress=False, seed=5)
    data = images.load(config.data, config.seed)
    trainer = SearchTrainer(config, data, strategy)
    trainer.initial_alphas = [np.array(v) for v in trainer.arch_variables]
    trainer.weight_optimizer.learning_rate.assign(config.learning_rate)
    train_it, val_it = trainer.epoch_iterators(0)
    for _ in range(steps):
        trainer.train_step(train_it, val_it)
    return trainer


@pytest.mark.parametrize("order", ["first"])
def test_mirrored_search_step_matches_single_device(order, tmp_path, mirrored_strategy):
    single = _train(tf.distribute.get_strategy(), order, tmp_path / "one")
    mirrored = _train(mirrored_strategy, order, tmp_path / "two")
    assert mirrored.replicas == 2
    for a, b in zip(single.arch_variables, mirrored.arch_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
    for a, b in zip(single.model.variables, mirrored.model.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-5)
        # Every copy of a mirrored variable is identical on both replicas.
        copies = mirrored_strategy.experimental_local_results(b.value)
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    # The alphas really moved (two Adam steps), so the comparison means something.
    for before, after in zip(single.initial_alphas, single.arch_variables):
        assert np.abs(np.asarray(after) - before).max() > 1e-5
    assert single.arch_optimizer.iterations.numpy() == 2
