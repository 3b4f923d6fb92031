"""The CNN search loop: architecture warm-up and how decided the alphas are."""

import json

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.configs import SearchConfig
from autonet_tf.data import images
from autonet_tf.training.collapse_guard import largest_eigenvalue
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
    history = trainer.search() and trainer.loop.history
    for before, after in zip(start, seen[0]):
        np.testing.assert_array_equal(after, before)  # warm-up: weights only
    assert max(np.abs(a - b).max() for a, b in zip(seen[1], seen[0])) > 1e-3
    assert history[0]["arch_warmup"] == 1 and "arch_warmup" not in history[1]
    assert history[0]["arch_loss"] == 0.0 and history[1]["arch_loss"] > 0.0
    for record in history:
        assert 0.0 < record["alpha_entropy_normal"] <= 1.0
        assert record["alpha_margin_normal"] >= 0.0
    assert history[1]["alpha_entropy_normal"] < history[0]["alpha_entropy_normal"]


@pytest.mark.slow
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


def test_lanczos_finds_the_largest_eigenvalue_of_a_known_operator():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((80, 80)))[0]
    # A Hessian-like spectrum: one large negative eigenvalue, the top one at 5.
    values = np.concatenate([[5.0, 2.0, -9.0], rng.uniform(-0.1, 0.1, 77)])
    hessian = basis @ np.diag(values) @ basis.T
    assert largest_eigenvalue(lambda v: hessian @ v, 80, iterations=10) == pytest.approx(
        5.0, rel=1e-3)


def _tiny_search(tmp_path, **overrides):
    settings = dict(model_dir=str(tmp_path), epochs=3, batch_size=16, layers=3,
                    init_channels=4, steps=2, multiplier=2, max_steps_per_epoch=2,
                    progress=False, seed=1, arch_learning_rate=0.05)
    settings.update(overrides)
    return SearchConfig(**settings)


@pytest.mark.slow
def test_alpha_hessian_vector_product_matches_double_backprop(tmp_path):
    trainer = SearchTrainer(_tiny_search(tmp_path), images.load(SearchConfig().data, 1))
    batch = next(iter(trainer._batches(trainer.arch_split, 0, shuffle=False)))
    vector = [tf.random.stateless_normal(a.shape, [3, i]) for i, a in
              enumerate(trainer.arch_variables)]
    approx = trainer._alpha_hvp(batch, vector)
    weights, alphas = trainer.architect.values()
    with tf.GradientTape() as outer:
        outer.watch(alphas)
        with tf.GradientTape() as inner:
            inner.watch(alphas)
            loss, _, _ = trainer.gradients.loss(weights, alphas, batch)
        grads = inner.gradient(loss, alphas, unconnected_gradients="zero")
        dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vector)])
    exact = outer.gradient(dot, alphas)
    flat = [np.concatenate([np.ravel(t) for t in x]) for x in (approx, exact)]
    assert np.linalg.norm(flat[0] - flat[1]) / np.linalg.norm(flat[1]) < 1e-4


@pytest.mark.slow
def test_collapse_guard_records_its_signals_and_stops_keeping_the_last_healthy_genotype(
        tmp_path):
    # A cap of 0 skip connections stands in for a collapse: the guard acts at
    # the first epoch whose normal cell holds a skip connection.
    data = images.load(SearchConfig().data, 1)
    config = _tiny_search(tmp_path, epochs=6, guard_max_skip=0, collapse_guard="on")
    trainer = SearchTrainer(config, data)
    skip = trainer.model.primitives.index("skip_connect")
    original = trainer.begin_epoch

    def begin_epoch(epoch):  # from epoch 3 on, the alphas favour skips everywhere
        if epoch == 2:
            trainer.model.alphas_normal.assign(
                trainer.model.alphas_normal + 5.0 * tf.one_hot(skip, 8))
        return original(epoch)

    trainer.begin_epoch = begin_epoch
    genotype = trainer.search()
    history = trainer.loop.history
    assert [r["epoch"] for r in history] == [1, 2, 3]  # stopped after epoch 3 of 6
    for record in history:
        assert np.isfinite(record["hessian_eigenvalue"])
        assert record["normal_parameter_free"] >= record["normal_skip_connects"] >= 0
    assert history[2]["normal_skip_connects"] > 0
    guard = history[2]["collapse_guard"]
    assert "skip connections in the normal cell (cap 0)" in guard["reason"]
    kept = max(r["epoch"] for r in history[:2] if r["normal_skip_connects"] == 0)
    assert guard["kept_epoch"] == kept
    assert genotype.to_dict() == history[kept - 1]["genotype"]
    assert all(op != "skip_connect" for op, _ in genotype.normal)
    # Rerun: complete; the kept genotype again, nothing searched.
    again = SearchTrainer(config, data)
    assert again.search().to_dict() == genotype.to_dict()
    assert again.loop.already_complete


@pytest.mark.slow
def test_collapse_guard_acts_on_eigenvalue_growth_and_is_off_for_the_reference(tmp_path):
    from autonet_tf.training.collapse_guard import CollapseGuard

    guard = CollapseGuard(max_skip=2, eigen_growth=1.3, window=2)
    history = [{"epoch": e, "normal_skip_connects": 0, "hessian_eigenvalue": v}
               for e, v in ((1, 1.0), (2, 1.1), (3, 1.2))]
    calm = guard.check(4, {"normal_skip_connects": 1, "hessian_eigenvalue": 1.3}, history)
    assert not calm.stop
    grown = guard.check(4, {"normal_skip_connects": 1, "hessian_eigenvalue": 2.5}, history)
    assert grown.stop and grown.keep_epoch == 2 and "grew" in grown.reason
    def guard_on(dataset, setting="auto"):
        config = SearchConfig(collapse_guard=setting)
        config.data.dataset = dataset
        return config.guard_on

    assert guard_on("organmnist.npz") and guard_on("svhn_cropped")
    assert not guard_on("cifar10") and not guard_on("digits")  # the paper's; the demo
    assert guard_on("digits", "on") and not guard_on("svhn_cropped", "off")
    trainer = SearchTrainer(_tiny_search(tmp_path, epochs=1, collapse_guard="off"),
                            images.load(SearchConfig().data, 1))
    trainer.search()
    assert "hessian_eigenvalue" not in trainer.loop.history[0]
