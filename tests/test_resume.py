"""Resume is exact for all four trainers: every variable, every optimizer slot, the results.

Each test runs a trainer uninterrupted, then runs the same configuration in
another directory, stops it mid-epoch (after a checkpoint), builds a fresh
trainer there that resumes and finishes, and compares EVERY variable the
checkpoint holds (model weights and BatchNorm statistics, optimizer slots and
iterations, averaged-SGD copies, hidden states, loop position) and the final
evaluation with the uninterrupted run.
"""

import os

import numpy as np
import pytest

import tensorflow as tf

from autonet_tf import export, tracking
from autonet_tf.configs import DataConfig, RNNSearchConfig, RNNTrainConfig, SearchConfig, TrainConfig
from autonet_tf.data import images, text
from autonet_tf.errors import UserInputError
from autonet_tf.search_space import rnn_genotypes
from autonet_tf.search_space.genotypes import DARTS_V2
from autonet_tf.training.network_trainer import NetworkTrainer
from autonet_tf.training.rnn_search_trainer import RNNSearchTrainer
from autonet_tf.training.rnn_trainer import RNNTrainer
from autonet_tf.tracking import checkpoint_variables
from autonet_tf.training.search_trainer import SearchTrainer

# 3 steps per epoch, 2 epochs, a checkpoint after every step; the stop comes
# before step 5, i.e. in epoch 2 after its first step.
STEPS, STOP_AT = 3, 4


class _Stopped(Exception):
    pass


def _stop_after(trainer, steps: int) -> None:
    """Makes ``trainer`` raise before its step number ``steps + 1`` (like a kill there)."""
    step = trainer.train_step
    done = [0]

    def counted(*iterators):
        if done[0] == steps:
            raise _Stopped
        done[0] += 1
        return step(*iterators)

    trainer.train_step = counted


def _state(trainer) -> list[tuple[str, np.ndarray]]:
    """(kind, value) of every variable in the trainer's checkpoint but the save counter."""
    counter = trainer.loop.checkpoint.save_counter
    return [(getattr(v, "path", None) or v.name, np.asarray(v.numpy()))
            for v in checkpoint_variables(trainer.loop.checkpoint) if v is not counter]


def _compare_with_resumed(make, run, tmp_path):
    """Returns (uninterrupted trainer, resumed trainer) after checking every variable."""
    whole = make(tmp_path / "whole")
    run(whole)
    stopped = make(tmp_path / "stopped")
    _stop_after(stopped, STOP_AT)
    with pytest.raises(_Stopped):
        run(stopped)
    resumed = make(tmp_path / "stopped")
    assert resumed.loop.start_position == (1, STOP_AT - STEPS)  # epoch 2, mid-epoch
    run(resumed)
    a, b = _state(whole), _state(resumed)
    assert len(a) == len(b) > len(whole.model.variables)
    moved = 0
    for (name, x), (_, y) in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=name)
    # The comparison means something: BatchNorm statistics left their start.
    for v in whole.model.non_trainable_variables:
        if "moving_variance" in v.path and np.abs(v.numpy() - 1.0).max() > 1e-3:
            moved += 1
    if any("moving_variance" in v.path for v in whole.model.non_trainable_variables):
        assert moved > 0
    return whole, resumed


@pytest.mark.slow
@pytest.mark.parametrize("method, order", [("darts", "first"), ("pc_darts", "second")])
def test_cnn_search_resumes_every_variable(tmp_path, method, order):
    data = images.load(DataConfig(), 5)

    def make(d):
        # One node per cell: resume is about state, and second order's graph
        # grows with every edge.
        config = SearchConfig(model_dir=str(d), epochs=2, batch_size=16, layers=3,
                              init_channels=4, steps=1, multiplier=1, max_steps_per_epoch=STEPS,
                              checkpoint_every=1, progress=False, seed=5, method=method,
                              partial_channels=2, order=order)
        return SearchTrainer(config, data)

    whole, resumed = _compare_with_resumed(make, lambda t: t.search(), tmp_path)
    assert len(whole.model.non_trainable_variables) > 100  # every cell's BN statistics
    # Empty Keras containers stay out of the object graph walked on every save.
    nodes = tf.train.TrackableView(whole.loop.checkpoint).descendants()
    assert not [n for n in nodes if isinstance(n, tracking._Items) and not n._trackable_children()]
    assert len(whole.arch_variables) == (4 if method == "pc_darts" else 2)  # betas too
    assert resumed.model.genotype() == whole.model.genotype()
    a, b = whole.validate(1), resumed.validate(1)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    assert b["val_accuracy"] == a["val_accuracy"]


@pytest.mark.slow
def test_network_training_resumes_every_variable_and_exports_the_same_model(tmp_path):
    data = images.load(DataConfig(), 3)

    def make(d):
        # Drop path on: its masks must be drawn again identically after resume.
        config = TrainConfig(model_dir=str(d), genotype="DARTS_V2", epochs=2, batch_size=16,
                             layers=3, init_channels=4, cutout_length=0, drop_path_prob=0.3,
                             max_steps_per_epoch=STEPS, checkpoint_every=1, progress=False,
                             seed=3)
        return NetworkTrainer(config, DARTS_V2, data)

    whole, resumed = _compare_with_resumed(make, lambda t: t.train(), tmp_path)
    a, b = whole.evaluate(), resumed.evaluate()
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert b["accuracy"] == a["accuracy"]
    # The export made after the resume is the uninterrupted run's model.
    d = str(tmp_path / "export")
    export.export_classifier(resumed.export_model(), d, input_shape=data.input_shape,
                             mean=data.mean, std=data.std, class_names=data.class_names,
                             metadata={})
    raw = np.asarray(data.x_test[:64], np.float32)
    expected = export.serving_model(whole.model, data.input_shape, data.mean, data.std)(raw)
    got = export.LoadedClassifier(os.path.join(d, "saved_model")).predict(raw)
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-4, atol=1e-5)


def _rnn_common(d):
    return dict(model_dir=str(d), epochs=2, batch_size=8, bptt=10, emsize=16, nhid=16,
                progress=False, max_steps_per_epoch=STEPS, checkpoint_every=1)


@pytest.mark.slow
def test_recurrent_search_resumes_every_variable(tmp_path):
    corpus = text.synthetic_corpus()

    def make(d):
        return RNNSearchTrainer(RNNSearchConfig(**_rnn_common(d), seed=4), corpus)

    whole, resumed = _compare_with_resumed(make, lambda t: t.search(), tmp_path)
    assert resumed.model.genotype() == whole.model.genotype()
    a, b = whole.validate(1), resumed.validate(1)
    assert b["val_perplexity"] == pytest.approx(a["val_perplexity"], rel=1e-5)


def test_recurrent_training_resumes_every_variable_with_averaged_sgd(tmp_path):
    corpus = text.synthetic_corpus()

    def make(d):
        trainer = RNNTrainer(RNNTrainConfig(**_rnn_common(d), genotype="DARTS_V2", seed=4),
                             rnn_genotypes.DARTS_V2_RNN, corpus)
        if trainer.loop.start_position == (0, 0):
            trainer.asgd.assign(1)  # averaged SGD from the start: its state must resume too
        return trainer

    whole, resumed = _compare_with_resumed(make, lambda t: t.train(), tmp_path)
    assert int(resumed.average_count.numpy()) == int(whole.average_count.numpy()) > 0
    a, b = whole.perplexity("test"), resumed.perplexity("test")
    assert b["perplexity"] == pytest.approx(a["perplexity"], rel=1e-5)


def test_a_checkpoint_of_another_model_is_refused_and_left_alone(tmp_path):
    data = images.load(DataConfig(), 0)
    d = tmp_path / "run"

    def make(layers):
        config = TrainConfig(model_dir=str(d), genotype="DARTS_V2", epochs=1, batch_size=16,
                             layers=layers, init_channels=4, cutout_length=0, auxiliary=False,
                             max_steps_per_epoch=1, progress=False)
        return NetworkTrainer(config, DARTS_V2, data)

    make(3).train()
    files = sorted(os.listdir(d / "checkpoints"))
    with pytest.raises(UserInputError, match="does not match this run's model"):
        make(4)
    assert sorted(os.listdir(d / "checkpoints")) == files


@pytest.mark.slow
def test_epoch_ends_are_checkpointed_by_age_and_the_last_always(tmp_path):
    data = images.load(DataConfig(), 3)

    def checkpoints(secs):
        config = TrainConfig(model_dir=str(tmp_path / str(secs)), genotype="DARTS_V2",
                             epochs=3, batch_size=16, layers=3, init_channels=4,
                             max_steps_per_epoch=1, checkpoint_secs=secs, progress=False)
        trainer = NetworkTrainer(config, DARTS_V2, data)
        trainer.train()
        return [os.path.basename(p) for p in trainer.loop.manager.checkpoints]

    # 0: every epoch's end (the last two kept); an age never reached: only the last.
    assert checkpoints(0) == ["ckpt-2", "ckpt-3"]
    assert checkpoints(1e6) == ["ckpt-3"]
    with pytest.raises(UserInputError, match="--checkpoint_secs=-1 is invalid"):
        TrainConfig(checkpoint_secs=-1).validate()
