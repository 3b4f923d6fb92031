"""Searches under MirroredStrategy on 2 logical CPUs; strategy bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.configs import RNNSearchConfig, SearchConfig
from autonet_tf.data import images, text
from autonet_tf.distribute.strategy import create_strategy
from autonet_tf.errors import UserInputError
from autonet_tf.training.optimizers import MomentumSGD
from autonet_tf.training.rnn_search_trainer import RNNSearchTrainer
from autonet_tf.training.search_trainer import SearchTrainer
from conftest import assert_one_line_error, run_bin


def _train(strategy, order, tmp_path, steps=2, method="darts"):
    config = SearchConfig(model_dir=str(tmp_path), order=order, epochs=1, batch_size=16,
                          layers=2, init_channels=4, steps=1, multiplier=1,
                          max_steps_per_epoch=steps, progress=False, seed=5, method=method,
                          partial_channels=2)
    data = images.load(config.data, config.seed)
    trainer = SearchTrainer(config, data, strategy)
    trainer.initial_alphas = [np.array(v) for v in trainer.arch_variables]
    trainer.weight_optimizer.learning_rate.assign(config.learning_rate)
    train_it, val_it = trainer.epoch_iterators(0)
    for _ in range(steps):
        trainer.train_step(train_it, val_it)
    return trainer


def _assert_replicas_identical(strategy, variables):
    """Every copy of a mirrored variable is identical on both replicas."""
    for v in variables:
        inner = v.value if isinstance(v, keras.Variable) else v
        copies = [np.asarray(c) for c in strategy.experimental_local_results(inner)]
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1])


def test_momentum_sgd_updates_each_replicas_copies_by_shape_with_the_summed_gradients(
        mirrored_strategy):
    rng = np.random.default_rng(0)
    shapes = [(3, 3, 4, 1), (2,), (3, 3, 4, 1), (1, 1, 4, 8), (2,)]
    w = [rng.normal(size=s).astype(np.float32) for s in shapes]
    with mirrored_strategy.scope():
        variables = [tf.Variable(x) for x in w]
        opt = MomentumSGD(0.1, momentum=0.9, l2=0.01)
        opt.build(variables)

    @tf.function(autograph=False)
    def step(g):
        # each replica hands over half of the gradient; Keras sums the halves
        return mirrored_strategy.run(lambda: opt.apply([x * 0.5 for x in g], variables))

    buf = [np.zeros(s, np.float32) for s in shapes]
    for lr in (0.1, 0.05):
        g = [rng.normal(size=s).astype(np.float32) for s in shapes]
        opt.learning_rate.assign(lr)
        step([tf.constant(x) for x in g])
        buf = [0.9 * b + (x + 0.01 * v) for b, x, v in zip(buf, g, w)]
        w = [v - lr * b for v, b in zip(w, buf)]
    _assert_replicas_identical(mirrored_strategy, variables)
    _assert_replicas_identical(mirrored_strategy, [opt.momentum_buffer(v) for v in variables])
    for var, want, b in zip(variables, w, buf):
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(opt.momentum_buffer(var).numpy(), b, rtol=1e-6, atol=1e-7)
    graph = step.get_concrete_function([tf.zeros(s) for s in shapes]).graph
    kinds = [op.type for op in graph.get_operations()]
    # per device, one stacked update for each of the three shapes (buffers
    # and weights), not one update per variable
    assert kinds.count("Unpack") == 2 * 2 * 3
    assert kinds.count("AssignSubVariableOp") == 0


@pytest.mark.parametrize("order, method", [("first", "darts"), ("first", "pc_darts")])
@pytest.mark.slow
def test_mirrored_search_step_matches_single_device(order, method, tmp_path, mirrored_strategy):
    single = _train(tf.distribute.get_strategy(), order, tmp_path / "one", method=method)
    mirrored = _train(mirrored_strategy, order, tmp_path / "two", method=method)
    assert mirrored.replicas == 2
    for a, b in zip(single.arch_variables, mirrored.arch_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
    for a, b in zip(single.model.variables, mirrored.model.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-5)
    _assert_replicas_identical(mirrored_strategy, mirrored.model.variables)
    # The alphas really moved (two Adam steps), so the comparison means something.
    for before, after in zip(single.initial_alphas, single.arch_variables):
        assert np.abs(np.asarray(after) - before).max() > 1e-5
    assert single.arch_optimizer.iterations.numpy() == 2
    if method == "darts":  # (one method is enough: the same products, a long build each)
        # The collapse guard's eigenvalue: the same global batch, the same number.
        assert mirrored.hessian_eigenvalue(0) == pytest.approx(single.hessian_eigenvalue(0),
                                                               rel=1e-3)


@pytest.mark.slow
def test_mirrored_recurrent_search_second_order(tmp_path, mirrored_strategy):
    config = RNNSearchConfig(model_dir=str(tmp_path), order="second", epochs=1, batch_size=8,
                             bptt=10, emsize=16, nhid=16, progress=False, max_steps_per_epoch=2)
    trainer = RNNSearchTrainer(config, text.synthetic_corpus(), mirrored_strategy)
    assert trainer.replicas == 2
    before = [np.array(a) for a in trainer.arch_variables]
    iterators = trainer.epoch_iterators(0)
    for _ in range(2):
        out = {k: float(v) for k, v in trainer.train_step(*iterators).items()}
        assert all(np.isfinite(v) for v in out.values()), out
    assert trainer.arch_optimizer.iterations.numpy() == 2
    assert np.abs(np.asarray(trainer.arch_variables[0]) - before[0]).max() > 1e-4
    # Virtual steps assign weights inside strategy.run: nothing may drift apart.
    _assert_replicas_identical(mirrored_strategy, trainer.arch_variables)
    _assert_replicas_identical(mirrored_strategy, trainer.model.weights)
    assert np.isfinite(trainer.validate(0)["val_loss"])


@pytest.mark.process
def test_strategy_bad_input(tmp_path):
    with pytest.raises(UserInputError, match="only 2 device"):
        create_strategy("mirrored", num_devices=3)
    d = tmp_path / "run"
    proc = run_bin("search.py", "--model=rnn", "--strategy=multi_worker", f"--model_dir={d}",
                   env={"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}'})
    assert_one_line_error(proc, "TF_CONFIG is not valid JSON")
    # (A grpc:// address of no TPU waits for it; a name is looked up on the network.)
    proc = run_bin("train.py", "--genotype=DARTS_V1", "--strategy=tpu", f"--model_dir={d}")
    assert_one_line_error(proc, "--strategy=tpu (no --tpu given): no TPU found")
    assert not d.exists()
