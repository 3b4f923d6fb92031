"""--steps_per_loop: several training steps in one tf.function call give the
one-step-per-call run's every variable, history and mid-epoch checkpoints."""

import json
import os

import numpy as np
import pytest

from autonet_tf.configs import DataConfig, RNNTrainConfig, SearchConfig, TrainConfig
from autonet_tf.data import images, text
from autonet_tf.errors import UserInputError
from autonet_tf.search_space import rnn_genotypes
from autonet_tf.search_space.genotypes import DARTS_V2
from autonet_tf.tracking import checkpoint_variables
from autonet_tf.training.network_trainer import NetworkTrainer
from autonet_tf.training.rnn_trainer import RNNTrainer
from autonet_tf.training.search_trainer import SearchTrainer

# 7 steps per epoch, a checkpoint every 4 and at every epoch end: with 3
# steps per call the calls run 3 + 1 (up to the checkpoint) + 3 steps.
STEPS, EVERY = 7, 4


def _variables(trainer):
    counter = trainer.loop.checkpoint.save_counter
    return [(getattr(v, "path", None) or v.name, np.asarray(v.numpy()))
            for v in checkpoint_variables(trainer.loop.checkpoint) if v is not counter]


def _history(d):
    with open(os.path.join(d, "history.jsonl")) as f:
        return [json.loads(line) for line in f]


def _same_runs(make, run, tmp_path):
    one, looped = make(tmp_path / "one", 1), make(tmp_path / "looped", 3)
    calls = []
    step = looped.train_step
    looped.train_step = lambda *it: (calls.append(1), step(*it))[1]  # counted at trace time
    run(one)
    run(looped)
    assert looped.loop._looped and len(calls) <= 2  # traced inside the loop, not called per step
    a, b = _variables(one), _variables(looped)
    assert len(a) == len(b) > len(one.model.variables)
    for (name, x), (_, y) in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=name)
    ha, hb = _history(one.config.model_dir), _history(looped.config.model_dir)
    for ra, rb in zip(ha, hb):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["train_accuracy"] == pytest.approx(ra["train_accuracy"], abs=1e-6)
    # the same mid-epoch checkpoints were written (the last two kept)
    assert sorted(os.listdir(os.path.join(one.config.model_dir, "checkpoints"))) == sorted(
        os.listdir(os.path.join(looped.config.model_dir, "checkpoints")))
    return one, looped


@pytest.mark.slow
def test_network_training_in_calls_of_three_steps_is_the_one_step_run(tmp_path):
    data = images.load(DataConfig(), 3)

    def make(d, steps_per_loop):
        config = TrainConfig(model_dir=str(d), genotype="DARTS_V2", epochs=2, batch_size=16,
                             layers=3, init_channels=4, cutout_length=0, drop_path_prob=0.3,
                             max_steps_per_epoch=STEPS, checkpoint_every=EVERY,
                             checkpoint_secs=0, progress=False, seed=3,
                             steps_per_loop=steps_per_loop)
        return NetworkTrainer(config, DARTS_V2, data)

    _same_runs(make, lambda t: t.train(), tmp_path)


@pytest.mark.slow
def test_search_in_calls_of_three_steps_is_the_one_step_run_also_in_warm_up(tmp_path):
    data = images.load(DataConfig(), 5)

    def make(d, steps_per_loop):
        config = SearchConfig(model_dir=str(d), epochs=2, batch_size=16, layers=2,
                              init_channels=4, steps=1, multiplier=1,
                              max_steps_per_epoch=STEPS, checkpoint_every=EVERY,
                              checkpoint_secs=0, arch_warmup_epochs=1, progress=False, seed=5,
                              steps_per_loop=steps_per_loop)
        return SearchTrainer(config, data)

    one, looped = _same_runs(make, lambda t: t.search(), tmp_path)
    assert set(looped.loop._looped) == {True, False}  # the warm-up step and the full step
    assert looped.model.genotype() == one.model.genotype()


def test_recurrent_trainers_refuse_several_steps_per_call(tmp_path):
    config = RNNTrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=8, bptt=10,
                            emsize=16, nhid=16, progress=False, steps_per_loop=2)
    with pytest.raises(UserInputError, match="--steps_per_loop=2 does not apply to --model=rnn"):
        RNNTrainer(config, rnn_genotypes.DARTS_V2_RNN, text.synthetic_corpus())
