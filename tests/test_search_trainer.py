"""The CNN search loop: architecture warm-up and how decided the alphas are."""

import json

import numpy as np
import pytest

from autonet_tf.configs import SearchConfig
from autonet_tf.data import images
from autonet_tf.training.search_common import alpha_decidedness
from autonet_tf.training.search_trainer import SearchTrainer


def test_decidedness_of_uniform_and_of_decided_alphas():
    primitives = ["none", "a", "b", "c"]
    uniform = {"primitives": primitives, "normal": [[0.25] * 4] * 3}
    out = alpha_decidedness(uniform)
    assert out["alpha_entropy_normal"] == pytest.approx(1.0)
    assert out["alpha_margin_normal"] == pytest.approx(0.0)
    # 'none' is left out of the margin, as it is of the derived genotype.
    decided = {"primitives": primitives, "reduce": [[0.7, 0.2, 0.05, 0.05], [0.0, 1.0, 0.0, 0.0]]}
    out = alpha_decidedness(decided)
    assert out["alpha_margin_reduce"] == pytest.approx((0.15 + 1.0) / 2)
    assert 0.0 <= out["alpha_entropy_reduce"] < 0.7


def test_alphas_stay_put_during_the_warm_up_and_move_after_it(tmp_path):
    config = SearchConfig(model_dir=str(tmp_path), epochs=2, arch_warmup_epochs=1,
                          batch_size=16, layers=2, init_channels=4, steps=1, multiplier=1,
                          max_steps_per_epoch=2, progress=False, seed=1,
                          arch_learning_rate=0.05)
    trainer = SearchTrainer(config, images.load(config.data, 1))
    start = [np.array(a.numpy()) for a in trainer.arch_variables]
    seen = []
    original = trainer.end_epoch

    def end_epoch(epoch, step):
        seen.append([np.array(a.numpy()) for a in trainer.arch_variables])
        return original(epoch, step)

    trainer.end_epoch = end_epoch
    history = trainer.search() and trainer.history
    for before, after in zip(start, seen[0]):
        np.testing.assert_array_equal(after, before)  # warm-up: weights only
    assert max(np.abs(a - b).max() for a, b in zip(seen[1], seen[0])) > 1e-3
    assert history[0]["arch_warmup"] == 1 and "arch_warmup" not in history[1]
    assert history[0]["arch_loss"] == 0.0 and history[1]["arch_loss"] > 0.0
    for record in history:
        assert 0.0 < record["alpha_entropy_normal"] <= 1.0
        assert record["alpha_margin_normal"] >= 0.0
    assert history[1]["alpha_entropy_normal"] < history[0]["alpha_entropy_normal"]


def test_max_skip_caps_every_genotype_the_search_writes(tmp_path):
    config = SearchConfig(model_dir=str(tmp_path), epochs=1, batch_size=16, layers=2,
                          init_channels=4, steps=2, multiplier=2, max_steps_per_epoch=1,
                          progress=False, seed=1, max_skip=0)
    trainer = SearchTrainer(config, images.load(config.data, 1))
    skip = trainer.model.primitives.index("skip_connect")
    # Alphas that favour skips everywhere: uncapped, the normal cell is all skips.
    trainer.model.alphas_normal.assign(
        np.eye(len(trainer.model.primitives))[[skip] * 5] * 5.0)
    assert {op for op, _ in trainer.model.genotype().normal} == {"skip_connect"}
    genotype = trainer.search()
    assert "skip_connect" not in {op for op, _ in genotype.normal}
    history = [json.loads(l) for l in open(tmp_path / "history.jsonl")]
    assert all(op != "skip_connect" for op, _ in history[-1]["genotype"]["normal"])
