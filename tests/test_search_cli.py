"""bin/search.py end to end: outputs, resume after a kill, tfds mock data, bad input."""

import json
import os

import numpy as np
import pytest

from autonet_tf.configs import DataConfig
from autonet_tf.data import images
from autonet_tf.distribute.strategy import create_strategy
from autonet_tf.errors import UserInputError
from autonet_tf.search_space.genotypes import Genotype
from conftest import assert_one_line_error, kill_when_exists, run_bin, run_bin_with_mock_tfds

# A checkpoint after every step and every epoch (--checkpoint_secs=0).
TINY = ["--layers=2", "--init_channels=4", "--batch_size=16", "--max_steps_per_epoch=2",
        "--checkpoint_every=1", "--checkpoint_secs=0", "--noretrain"]
# One node per cell (2 edges): the same code paths, a much smaller graph.
ONE_NODE = TINY + ["--steps=1", "--multiplier=1"]
# Retraining the discovered network after the search, tiny as well.
TINY_RETRAIN = ["--layers=2", "--init_channels=4", "--steps=2", "--multiplier=2",
                "--batch_size=16", "--max_steps_per_epoch=2",
                "--checkpoint_every=1", "--train_epochs=2", "--train_layers=3",
                "--train_init_channels=4", "--train_batch_size=32", "--drop_path_prob=0.2",
                "--tflite"]


def _assert_run_dir(d, epochs):
    config = json.load(open(os.path.join(d, "config.json")))
    assert config["epochs"] == epochs and config["layers"] == 2
    genotype = Genotype.from_json(open(os.path.join(d, "genotype.json")).read())
    for e in range(1, epochs + 1):
        assert Genotype.from_json(open(os.path.join(d, "genotypes", f"epoch_{e:03d}.json")).read())
        alphas = json.load(open(os.path.join(d, "alphas", f"epoch_{e:03d}.json")))
        rows = np.asarray(alphas["normal"])
        assert rows.shape == (sum(2 + i for i in range(config["steps"])), 8)
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-4)
    last = Genotype.from_json(open(os.path.join(d, "genotypes", f"epoch_{epochs:03d}.json")).read())
    assert last == genotype
    history = [json.loads(l) for l in open(os.path.join(d, "history.jsonl"))]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert all(np.isfinite(h["train_loss"]) for h in history)
    pictures = [f for f in os.listdir(d) if f.startswith("genotype_normal.")]
    assert pictures and pictures[0].split(".")[-1] in ("png", "dot")
    events = [f for f in os.listdir(os.path.join(d, "logs", "train")) if "tfevents" in f]
    assert events
    assert any(f.startswith("ckpt-") for f in os.listdir(os.path.join(d, "checkpoints")))
    return history


def _scalar_tags(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir, size_guidance={"tensors": 0})
    acc.Reload()
    return set(acc.Tags()["tensors"])


@pytest.mark.slow
def test_search_on_embedded_digits_trains_and_exports_the_result(tmp_path):
    d = str(tmp_path / "run")
    proc = run_bin("search.py", f"--model_dir={d}", "--epochs=2", *TINY_RETRAIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Final genotype: Genotype(normal=" in proc.stdout
    assert "Epoch 2/2" in proc.stdout
    assert "Collapse guard: off (--collapse_guard=auto on digits" in proc.stdout
    _assert_run_dir(d, 2)
    # The discovered genotype was trained from scratch and exported.
    searched = Genotype.from_json(open(os.path.join(d, "genotype.json")).read())
    train = os.path.join(d, "train")
    result = json.load(open(os.path.join(train, "result.json")))
    assert Genotype.from_dict(result["genotype"]) == searched
    assert result["epochs"] == 2 and 0 <= result["test_accuracy"] <= 1
    history = [json.loads(l) for l in open(os.path.join(train, "history.jsonl"))]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["drop_path_prob"] == pytest.approx(0.1)  # 0.2 * 1 / 2
    meta = json.load(open(os.path.join(train, "export", "metadata.json")))
    assert Genotype.from_dict(meta["genotype"]) == searched
    assert meta["parameters"] == result["parameters"] > 0
    assert os.path.exists(os.path.join(train, "export", "saved_model", "saved_model.pb"))
    assert os.path.getsize(os.path.join(train, "export", "model.tflite")) > 0
    assert f"Exported: {os.path.join(train, 'export')}" in proc.stdout
    tags = _scalar_tags(os.path.join(d, "logs", "train"))
    assert {"epoch_loss", "epoch_accuracy", "learning_rate", "arch_learning_rate",
            "alpha_normal/sep_conv_3x3", "alpha_reduce/max_pool_3x3"} <= tags
    assert "epoch_loss" in _scalar_tags(os.path.join(d, "logs", "val"))


@pytest.mark.slow
def test_killed_search_resumes_from_its_checkpoint(tmp_path):
    d = str(tmp_path / "run")
    # 2 steps per epoch, a checkpoint every step: ckpt-3 is epoch 2, step 1.
    kill_when_exists("search.py", [f"--model_dir={d}", "--epochs=3", *ONE_NODE],
                     os.path.join(d, "checkpoints", "ckpt-3.index"))
    assert not os.path.exists(os.path.join(d, "genotype.json"))
    resumed = run_bin("search.py", f"--model_dir={d}", "--epochs=3", *ONE_NODE)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from checkpoint" in resumed.stdout
    assert "Epoch 1/3" not in resumed.stdout
    _assert_run_dir(d, 3)
    # A finished run says so and trains nothing.
    again = run_bin("search.py", f"--model_dir={d}", "--epochs=3", *ONE_NODE)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Already complete" in again.stdout and "Resuming" not in again.stdout
    assert "Epoch " not in again.stdout
    assert "I0000" not in again.stderr and "cuInit" not in again.stderr  # start-up noise


@pytest.mark.slow
def test_search_on_tfds_mock_cifar10(tmp_path):
    d = str(tmp_path / "run")
    proc = run_bin_with_mock_tfds("search.py", "--dataset=cifar10", f"--model_dir={d}",
                                  "--epochs=1", *ONE_NODE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_run_dir(d, 1)
    config = json.load(open(os.path.join(d, "config.json")))
    assert config["data"]["dataset"] == "cifar10"


def _npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = dict(train_images=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8),
                  train_labels=rng.integers(0, 3, (40, 1)),
                  val_images=rng.integers(0, 255, (10, 8, 8), dtype=np.uint8),
                  val_labels=rng.integers(0, 3, (10, 1)),
                  test_images=rng.integers(0, 255, (10, 8, 8), dtype=np.uint8),
                  test_labels=rng.integers(0, 3, (10, 1)))
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("make_args, fragments", [
    (lambda t: ["--dataset=imagenet_fake"], ["--dataset='imagenet_fake' is not a known dataset"]),
    # Downloaded by default; this machine has no network: one line, in seconds.
    (lambda t: ["--dataset=cifar10", f"--data_dir={t / 'tfds'}"],
     ["not prepared in", "downloading it failed (cannot reach www.cs.toronto.edu",
      "tfds build cifar10"]),
    (lambda t: ["--dataset=mnist", f"--data_dir={t}", "--nodownload"],
     ["not prepared in", "(--nodownload)", "tfds build mnist"]),
    # ImageNet is prepared by tfds from the tar files the user downloads.
    (lambda t: ["--dataset=imagenet2012", f"--data_dir={t / 'tfds'}"],
     ["not prepared in", "files are not in", "ILSVRC2012_img_train.tar"]),
    (lambda t: ["--epochs=0"], ["--epochs=0 is invalid", "> 0"]),
    (lambda t: ["--order=third"], ["--order"]),
    (lambda t: ["--hessian=approx"], ["--hessian"]),
    (lambda t: ["--guard_eigen_growth=0.9"], ["--guard_eigen_growth=0.9 is invalid", "> 1"]),
    (lambda t: ["--train_portion=1.5"], ["--train_portion=1.5 is invalid"]),
    (lambda t: ["--batch_size=5000"], ["--batch_size=5000 is larger than the training splits"]),
    (lambda t: ["--layers=abc"], ["--layers"]),
    (lambda t: ["--train_epochs=0"], ["--train_epochs=0 is invalid"]),
    (lambda t: ["--drop_path_prob=1.5"], ["--drop_path_prob=1.5 is invalid"]),
    (lambda t: [f"--dataset={_npz(t / 'm.npz', train_images=None)}"], ["missing key(s) ['train_images']"]),
    (lambda t: [f"--dataset={(t / 'bad.npz').write_text('not a zip') and t / 'bad.npz'}"],
     ["not a readable .npz file"]),
    (lambda t: [f"--dataset={_npz(t / 'l.npz', train_labels=np.zeros((3, 2)))}"], ["train_labels has shape"]),
    (lambda t: ["--model_dir="], ["--model_dir is empty"]),
    (lambda t: ["--intra_op_threads=-2"], ["--intra_op_threads=-2 must be 0"]),
])
@pytest.mark.process
def test_bad_input_is_one_line_and_exit_2(tmp_path, make_args, fragments):
    d = tmp_path / "run"
    proc = run_bin("search.py", f"--model_dir={d}", *make_args(tmp_path))
    assert_one_line_error(proc, *fragments)
    assert not d.exists(), "bad input must not leave a run directory behind"


def test_npz_with_nan_images_or_unseen_test_labels_is_refused(tmp_path):
    images_nan = np.full((40, 8, 8), 10.0)
    images_nan[3, 2, 2] = np.nan
    with pytest.raises(UserInputError, match="NaN or infinite values in 1 image"):
        images.load(DataConfig(_npz(tmp_path / "nan.npz", train_images=images_nan)))
    labels = np.zeros((10, 1), np.int64)
    labels[:2] = 7  # training labels are 0..2
    with pytest.raises(UserInputError, match="2 test label.s. are above the largest training"):
        images.load(DataConfig(_npz(tmp_path / "unseen.npz", test_labels=labels)))


def test_multi_worker_without_tf_config_is_refused(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserInputError, match="--strategy=multi_worker needs TF_CONFIG"):
        create_strategy("multi_worker")


@pytest.mark.process
def test_unwritable_model_dir_and_bad_image_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_bin("search.py", f"--model_dir={blocker}/run")
    assert_one_line_error(proc, "is not a directory")
    folder = tmp_path / "images"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
    from PIL import Image
    Image.new("RGB", (8, 8)).save(folder / "a" / "ok.png")
    (folder / "b" / "broken.png").write_bytes(b"not an image")
    proc = run_bin("search.py", f"--dataset={folder}", f"--model_dir={tmp_path / 'run'}")
    assert_one_line_error(proc, "cannot read image", "broken.png")
    assert not (tmp_path / "run").exists()
