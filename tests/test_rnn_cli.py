"""--model=rnn end to end: search + retrain + export on a generated corpus, resume, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.configs import RNNTrainConfig, TextDataConfig
from autonet_tf.data import text
from autonet_tf.search_space.rnn_genotypes import RecurrentGenotype
from autonet_tf.train import run_rnn_train
from conftest import ROOT, assert_one_line_error, kill_when_exists, run_bin

TINY = ["--model=rnn", "--batch_size=8", "--bptt=10", "--nhid=16", "--eval_batch_size=4",
        "--checkpoint_every=2", "--noprogress"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return text.write_synthetic_corpus(str(tmp_path_factory.mktemp("corpus")), (400, 60, 60))


def _history(d):
    return [json.loads(line) for line in open(os.path.join(d, "history.jsonl"))]


@pytest.mark.slow
def test_rnn_search_then_retrain_and_export(tmp_path, corpus_dir):
    d = str(tmp_path / "run")
    proc = run_bin("search.py", *TINY, f"--dataset={corpus_dir}", f"--model_dir={d}",
                   "--epochs=2", "--max_steps_per_epoch=6", "--order=second",
                   "--train_epochs=3", "--train_nhid=16", "--train_batch_size=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Final genotype: Genotype(recurrent=" in proc.stdout
    genotype = RecurrentGenotype.from_string(open(os.path.join(d, "genotype.json")).read())
    assert genotype.steps == 8 and genotype.concat == tuple(range(1, 9))
    for epoch in (1, 2):
        RecurrentGenotype.from_string(open(os.path.join(d, "genotypes", f"epoch_00{epoch}.json")).read())
        alphas = json.load(open(os.path.join(d, "alphas", f"epoch_00{epoch}.json")))
        rows = np.asarray(alphas["recurrent"])
        assert rows.shape == (36, 5)
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-4)
    search = _history(d)
    assert [h["epoch"] for h in search] == [1, 2]
    assert all(np.isfinite(h["val_perplexity"]) and np.isfinite(h["arch_loss"]) for h in search)
    assert any(f.startswith("genotype_recurrent.") for f in os.listdir(d))
    assert any("tfevents" in f for f in os.listdir(os.path.join(d, "logs", "val")))
    config = json.load(open(os.path.join(d, "config.json")))
    assert config["order"] == "second" and config["nhid"] == 16 and config["emsize"] == 16

    # The discovered cell was trained from scratch: perplexity falls epoch by epoch.
    trained = _history(os.path.join(d, "train"))
    ppl = [h["val_perplexity"] for h in trained]
    assert len(ppl) == 3 and ppl[2] < ppl[0], ppl
    result = json.load(open(os.path.join(d, "train", "result.json")))
    assert result["genotype"] == genotype.to_dict()
    assert os.path.exists(os.path.join(d, "train", "export", "vocab.txt"))
    assert "Test perplexity:" in proc.stdout


@pytest.mark.slow
def test_exported_language_model_reproduces_in_memory_log_probs(tmp_path):
    config = RNNTrainConfig(data=TextDataConfig("synthetic"), genotype="DARTS_V1",
                            model_dir=str(tmp_path / "train"), epochs=2, batch_size=8, bptt=10,
                            emsize=16, nhid=16, max_steps_per_epoch=20, progress=False)
    result = run_rnn_train(config)
    history = result.history
    assert history[1]["train_loss"] < history[0]["train_loss"]
    model = result.trainer.model  # holds the exported (best) weights
    tokens = np.array([[3, 5, 7, 9, 11, 2], [1, 1, 4, 8, 16, 0]], np.int32)
    log_probs, _, _ = model((tf.constant(tokens), model.initial_hidden(2), None),
                            training=False)
    expected = str(tmp_path / "expected.npy")
    np.save(expected, log_probs.numpy())
    saved = os.path.join(result.export_dir, "saved_model")
    vocab = open(os.path.join(result.export_dir, "vocab.txt")).read().split("\n")
    words = [[vocab[i] for i in row] for row in tokens.tolist()]
    words[0][0] = "never-seen-word"
    code = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({saved!r})\n"
        f"tokens = tf.constant({tokens.tolist()!r}, tf.int32)\n"
        f"np.testing.assert_allclose(m.serve(tokens).numpy(), np.load({expected!r}), "
        "rtol=1e-5, atol=1e-5)\n"
        f"out = m.score_words(tf.constant({words!r}))\n"
        "ids = out['token_ids'].numpy()\n"
        f"assert ids[0, 0] == {vocab.index('<unk>')}, ids\n"
        f"assert ids[1].tolist() == {tokens[1].tolist()!r}, ids\n"
        "print('OK')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]

    # bin/evaluate.py on the export gives the run's test perplexity.
    proc = run_bin("evaluate.py", f"--saved_model={saved}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"perplexity {result.metrics['test_perplexity']:.2f}" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_killed_rnn_training_resumes_and_finishes(tmp_path):
    d = str(tmp_path / "run")
    # Every epoch's end checkpointed (the default keeps one per 30 s).
    args = ["train.py", *TINY, "--genotype=DARTS_V2", f"--model_dir={d}", "--epochs=2",
            "--max_steps_per_epoch=8", "--checkpoint_secs=0"]
    kill_when_exists(args[0], args[1:], os.path.join(d, "checkpoints", "checkpoint"))
    proc = run_bin(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming from checkpoint" in proc.stdout
    assert [h["epoch"] for h in _history(d)] == [1, 2]
    assert os.path.exists(os.path.join(d, "export", "saved_model", "saved_model.pb"))


@pytest.mark.process
@pytest.mark.parametrize("case", ["missing_split", "binary", "genotype", "cnn_flag", "emsize"])
def test_rnn_bad_input_gives_one_line_and_exit_2(tmp_path, case):
    corpus = text.write_synthetic_corpus(str(tmp_path / "c"), (30, 10, 10))
    args = ["train.py", "--model=rnn", f"--dataset={corpus}", f"--model_dir={tmp_path / 'r'}",
            "--genotype=DARTS_V2"]
    if case == "missing_split":
        os.unlink(os.path.join(corpus, "test.txt"))
        fragment = "has no test.txt"
    elif case == "binary":
        open(os.path.join(corpus, "train.txt"), "wb").write(b"\x00\xff\x00")
        fragment = "binary file"
    elif case == "genotype":
        args[-1] = '--genotype={"type": "rnn", "recurrent": [["relu", 3]], "concat": [1]}'
        fragment = "predecessor must be in [0, 0]"
    elif case == "cnn_flag":
        args.append("--layers=4")
        fragment = "--layers does not apply to --model=rnn"
    else:
        args += ["--emsize=32", "--nhid=16"]
        fragment = "--emsize=32 is invalid"
    proc = run_bin(*args)
    assert_one_line_error(proc, fragment)
    assert not os.path.exists(tmp_path / "r")
