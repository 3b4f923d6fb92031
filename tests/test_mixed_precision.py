"""--mixed_precision: search steps stay finite, alphas stay float32, the policy is restored."""

import keras
import numpy as np
import pytest

from autonet_tf.configs import RNNSearchConfig, SearchConfig
from autonet_tf.data import images, text
from autonet_tf.training.rnn_search_trainer import RNNSearchTrainer
from autonet_tf.training.search_trainer import SearchTrainer


def _check_steps(trainer, compute):
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    assert trainer.model.compute_dtype == compute
    before = [np.array(a.numpy()) for a in trainer.arch_variables]
    if compute == "float16":  # a scale these tiny models' float16 gradients take
        for o in (trainer.weight_optimizer, trainer.arch_optimizer):
            o.dynamic_scale.assign(2.0 ** 8)
    iterators = trainer.epoch_iterators(0)
    for _ in range(2):
        out = {k: float(v) for k, v in trainer.train_step(*iterators).items()}
        assert all(np.isfinite(v) for v in out.values()), out
    for a, b in zip(trainer.arch_variables, before):
        assert a.dtype == "float32"
        assert np.isfinite(a.numpy()).all() and np.abs(a.numpy() - b).max() > 0
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.weights)


@pytest.mark.parametrize("policy, order", [("mixed_bfloat16", "second"),
                                           ("mixed_float16", "first")])
@pytest.mark.slow
def test_recurrent_search_under_mixed_precision(tmp_path, policy, order):
    config = RNNSearchConfig(model_dir=str(tmp_path), order=order, epochs=1, batch_size=8,
                             bptt=10, emsize=16, nhid=16, progress=False, max_steps_per_epoch=2,
                             mixed_precision=policy)
    trainer = RNNSearchTrainer(config, text.synthetic_corpus())
    _check_steps(trainer, policy.split("_")[1])
    if policy == "mixed_float16":
        _check_dynamic_loss_scale(trainer)


def _check_dynamic_loss_scale(trainer):
    """A scale that overflows float16 skips the update and halves; a good step applies."""
    optimizers = (trainer.weight_optimizer, trainer.arch_optimizer)
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers)
    for o in optimizers:
        o.dynamic_scale.assign(2.0 ** 40)
    weights = [np.array(v.numpy()) for v in trainer.model.trainable_variables]
    iterators = trainer.epoch_iterators(0)
    out = trainer.train_step(*iterators)
    assert float(out["skipped"]) == 1.0 and float(out["grad_norm"]) == 0.0
    for o in optimizers:
        assert float(o.dynamic_scale.numpy()) == 2.0 ** 39
    for v, w in zip(trainer.model.trainable_variables, weights):
        np.testing.assert_array_equal(v.numpy(), w)  # skipped: no weight or alpha moved
    for o in optimizers:
        o.dynamic_scale.assign(2.0 ** 10)
    trainer.train_step(*iterators)
    moved = [np.abs(v.numpy() - w).max() for v, w in zip(trainer.model.trainable_variables,
                                                         weights)]
    assert max(moved) > 0 and all(np.isfinite(moved))


@pytest.mark.slow
def test_cnn_search_under_mixed_bfloat16(tmp_path):
    # (Second order and float16 run too; checked by hand, left out for suite time.)
    config = SearchConfig(model_dir=str(tmp_path), epochs=1, batch_size=16, layers=2,
                          init_channels=4, steps=2, multiplier=2, progress=False,
                          max_steps_per_epoch=2, mixed_precision="mixed_bfloat16")
    _check_steps(SearchTrainer(config, images.load(config.data, config.seed)), "bfloat16")
