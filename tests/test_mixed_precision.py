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
def test_recurrent_search_under_mixed_precision(tmp_path, policy, order):
    config = RNNSearchConfig(model_dir=str(tmp_path), order=order, epochs=1, batch_size=8,
                             bptt=10, emsize=16, nhid=16, progress=False, max_steps_per_epoch=2,
                             mixed_precision=policy)
    _check_steps(RNNSearchTrainer(config, text.synthetic_corpus()), policy.split("_")[1])


def test_cnn_search_under_mixed_bfloat16(tmp_path):
    # (Second order and float16 run too; checked by hand, left out for suite time.)
    config = SearchConfig(model_dir=str(tmp_path), epochs=1, batch_size=16, layers=2,
                          init_channels=4, steps=2, multiplier=2, progress=False,
                          max_steps_per_epoch=2, mixed_precision="mixed_bfloat16")
    _check_steps(SearchTrainer(config, images.load(config.data, config.seed)), "bfloat16")
