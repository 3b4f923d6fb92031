"""Recurrent DARTS: genotypes, corpora, model sizes, exact second-order gradients, ASGD."""

import json

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.configs import RNNTrainConfig, TextDataConfig
from autonet_tf.data import text
from autonet_tf.errors import UserInputError
from autonet_tf.models.rnn import RNNLanguageModel
from autonet_tf.search_space import rnn_genotypes as rg
from autonet_tf.training.architect import Architect, StatelessGradients
from autonet_tf.training.lm_trainer import lm_batch_loss
from autonet_tf.training.optimizers import MomentumSGD
from autonet_tf.training.rnn_trainer import RNNTrainer, should_average


# ----------------------------------------------------------------- genotypes
def test_recurrent_genotype_derived_from_handmade_alphas():
    alphas = np.zeros((rg.num_rnn_edges(), len(rg.RNN_PRIMITIVES)))
    wanted = [("relu", 0), ("tanh", 1), ("sigmoid", 0), ("identity", 3), ("relu", 2),
              ("tanh", 5), ("sigmoid", 6), ("identity", 4)]
    start = 0
    for node, (op, pred) in enumerate(wanted):
        alphas[start + pred, rg.RNN_PRIMITIVES.index(op)] = 3.0
        # 'none' is strongest on another edge of the node: it must be ignored.
        other = (pred + 1) % (node + 1)
        if other != pred:
            alphas[start + other, 0] = 9.0
        start += node + 1
    genotype = rg.derive_recurrent(alphas)
    assert list(genotype.recurrent) == wanted
    assert genotype.concat == tuple(range(1, 9))


def test_published_recurrent_genotypes_round_trip_and_parse_reference_text():
    for genotype in (rg.DARTS_V1_RNN, rg.DARTS_V2_RNN):
        assert rg.RecurrentGenotype.from_string(genotype.to_json()) == genotype
    text_form = ("Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), "
                 "('identity', 1), ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], "
                 "concat=range(1, 9))")
    assert rg.RecurrentGenotype.from_string(text_form) == rg.DARTS_V2_RNN
    assert rg.load_recurrent_genotype("DARTS_V1") == rg.DARTS_V1_RNN


@pytest.mark.parametrize("data, fragment", [
    ({"type": "rnn", "recurrent": [["relu", 1]], "concat": [1]}, "predecessor must be in [0, 0]"),
    ({"type": "rnn", "recurrent": [["conv", 0]], "concat": [1]}, "unknown op 'conv'"),
    ({"type": "rnn", "recurrent": [["none", 0]], "concat": [1]}, "unknown op 'none'"),
    ({"type": "rnn", "recurrent": [["relu", 0]], "concat": [2]}, "out of range"),
    ({"type": "cnn", "normal": []}, "expected 'rnn'"),
    ({"type": "rnn", "recurrent": "relu"}, "missing field"),
    ({"type": "rnn", "recurrent": [["relu"]], "concat": [1]}, "[op, predecessor] pair"),
])
def test_malformed_recurrent_genotypes_are_rejected(data, fragment):
    with pytest.raises(UserInputError, match=None) as info:
        rg.RecurrentGenotype.from_string(json.dumps(data))
    assert fragment in str(info.value)


def test_evaluation_model_at_850_units_has_about_23m_parameters():
    model = RNNLanguageModel(10000, 850, 850, rg.DARTS_V2_RNN)
    # 10000 x 850 tied embedding + 10000 bias + (1700 x 1700) + 8 x (850 x 1700)
    assert model.count_parameters() == 22_960_000
    search = RNNLanguageModel(10000, 300, 300, None)
    assert search.count_parameters() == 10000 * 300 + 10000 + 600 * 600 + 8 * 300 * 600
    assert search.alphas.shape == (36, 5)


# -------------------------------------------------------------------- corpora
def test_ptb_layout_directory_with_eos_and_unknown_words(tmp_path):
    (tmp_path / "ptb.train.txt").write_text(" the cat sat \n the <unk> ran \n\n")
    (tmp_path / "ptb.valid.txt").write_text(" the dog sat \n")
    (tmp_path / "ptb.test.txt").write_text(" a cat \n")
    corpus = text.load(str(tmp_path))
    assert corpus.vocab == ["the", "cat", "sat", "<eos>", "<unk>", "ran"]
    assert corpus.train.tolist() == [0, 1, 2, 3, 0, 4, 5, 3]
    unk = corpus.vocab.index("<unk>")
    assert corpus.valid.tolist() == [0, unk, 2, 3] and corpus.unknown["valid"] == 1
    assert corpus.test.tolist() == [unk, 1, 3]


@pytest.mark.parametrize("case, fragment", [
    ("missing", "has no valid.txt"),
    ("empty", "has no tokens"),
    ("binary", "binary file"),
    ("latin1", "not UTF-8"),
])
def test_bad_corpus_files_give_one_clear_error(tmp_path, case, fragment):
    text.write_synthetic_corpus(str(tmp_path), (20, 5, 5))
    target = tmp_path / "valid.txt"
    if case == "missing":
        target.unlink()
    elif case == "empty":
        target.write_text("\n  \n")
    elif case == "binary":
        target.write_bytes(b"\x00\x01\x02abc")
    else:
        target.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(UserInputError) as info:
        text.load(str(tmp_path))
    assert fragment in str(info.value)


def test_window_schedule_is_deterministic_and_stays_inside_the_rows():
    a = text.window_schedule(400, 35, 10, seed=3, epoch=1)
    assert a == text.window_schedule(400, 35, 10, seed=3, epoch=1)
    assert a != text.window_schedule(400, 35, 10, seed=3, epoch=2)
    assert all(5 <= n <= 55 and s + n <= 399 for s, n in a)
    fixed = text.window_schedule(400, 35, 3, seed=0, epoch=0, variable=False)
    assert fixed == [(0, 35), (35, 35), (70, 35)]


# ------------------------------------------------------- second-order gradient
def test_second_order_recurrent_gradient_matches_exact_nested_tapes(float64):
    vocab, nhid, batch = 9, 5, 3
    model = RNNLanguageModel(vocab, nhid, nhid, None, steps=3, dropout=0.3, dropouth=0.2,
                             dropoutx=0.3, dropouti=0.1, dropoute=0.1, alpha_init_scale=0.5,
                             seed=0)
    rng = np.random.default_rng(0)

    def make_batch(seed, tar):
        tokens = tf.constant(rng.integers(0, vocab, (batch, 6)), tf.int32)
        hidden = tf.constant(rng.normal(size=(batch, nhid)), tf.float64)
        return (tokens[:, :-1], tokens[:, 1:], hidden, model.dropout_masks([seed, 1], batch),
                tf.constant(tar, tf.float64))

    train, val = make_batch(1, 0.5), make_batch(2, 0.0)
    opt = MomentumSGD(0.7, 0.0, l2=1e-3)
    opt.build(model.weight_variables)
    grads = StatelessGradients(model, lambda call, b: lm_batch_loss(call, b, batch),
                               model.weight_variables, model.arch_variables)
    clip = 0.05  # small enough that the virtual step's gradient is clipped
    architect = Architect(grads, model.weight_variables, model.arch_variables, opt, "second",
                          epsilon=1e-4, virtual_clip=clip)
    _, approx, (next_hidden, _) = architect.gradients(train, val)
    assert next_hidden.shape == (batch, nhid)

    weights, alphas = architect.values()
    xi = tf.constant(0.7, tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(alphas)
        with tf.GradientTape() as inner:
            inner.watch(weights)
            loss_t, _, _ = grads.loss(weights, alphas, train)
        g_w = inner.gradient(loss_t, weights)
        norm = tf.linalg.global_norm(g_w)
        assert float(norm) > clip
        coef = tf.stop_gradient(clip / norm)
        unrolled = [w - xi * (coef * g + 1e-3 * w) for w, g in zip(weights, g_w)]
        loss_v, _, _ = grads.loss(unrolled, alphas, val)
    exact = outer.gradient(loss_v, alphas)
    a, e = np.ravel(approx[0]), np.ravel(exact[0])
    assert np.linalg.norm(a - e) / np.linalg.norm(e) < 1e-4
    # The Hessian term is not negligible here.
    with tf.GradientTape() as tape:
        tape.watch(alphas)
        first, _, _ = grads.loss(weights, alphas, val)
    g_first = np.ravel(tape.gradient(first, alphas)[0])
    assert np.linalg.norm(g_first - e) / np.linalg.norm(e) > 1e-3


# ----------------------------------------------------------------------- ASGD
def _tiny_train_config(tmp_path, **overrides):
    values = dict(data=TextDataConfig("synthetic"), model_dir=str(tmp_path / "run"), epochs=1,
                  batch_size=8, bptt=10, emsize=16, nhid=16, progress=False,
                  max_steps_per_epoch=4, genotype="DARTS_V2")
    values.update(overrides)
    return RNNTrainConfig(**values)


def test_averaged_sgd_keeps_the_running_mean_of_the_weights(tmp_path):
    trainer = RNNTrainer(_tiny_train_config(tmp_path), rg.DARTS_V2_RNN, text.synthetic_corpus())
    windows = trainer.epoch_iterators(0)[0]
    trainer.train_step(windows)  # an SGD step: no averaging yet
    assert int(trainer.average_count.numpy()) == 0
    trainer.asgd.assign(1)
    snapshots = []
    for _ in range(3):
        out = trainer.train_step(windows)
        assert np.isfinite(out["loss"])
        snapshots.append([np.array(v.value) for v in trainer.weight_variables])
    assert int(trainer.average_count.numpy()) == 3
    for i, avg in enumerate(trainer.averages):
        np.testing.assert_allclose(avg.numpy(), np.mean([s[i] for s in snapshots], axis=0),
                                   rtol=1e-5, atol=1e-6)


def test_switch_to_averaged_sgd_follows_the_reference_rule():
    # Worse than the best of all epochs except the last `nonmono` ones.
    assert not should_average([5.0, 4.0], 4.5, nonmono=1)  # min([5.0]) = 5.0
    assert should_average([5.0, 4.0, 4.5], 4.2, nonmono=1)  # min([5.0, 4.0]) = 4.0
    assert not should_average([5.0, 4.0, 4.5], 4.2, nonmono=5)  # too few epochs yet
    assert not should_average([5.0, 4.0, 3.0], 2.9, nonmono=1)


def test_rnn_training_on_two_mirrored_replicas_equals_one_device(tmp_path, mirrored_strategy):
    corpus = text.synthetic_corpus()
    weights = []
    for name, strategy in (("one", tf.distribute.get_strategy()),
                           ("two", mirrored_strategy)):
        config = _tiny_train_config(tmp_path / name)
        trainer = RNNTrainer(config, rg.DARTS_V2_RNN, corpus, strategy)
        assert trainer.replicas == (1 if name == "one" else 2)
        windows = trainer.epoch_iterators(0)[0]
        for _ in range(3):
            trainer.train_step(windows)
        weights.append([v.numpy() for v in trainer.weight_variables]
                       + [trainer.hidden["train"].numpy()])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
