"""bin/train.py, bin/evaluate.py, bin/visualize.py as a user runs them."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.search_space.genotypes import DARTS_V1, DARTS_V2
from conftest import assert_one_line_error, kill_when_exists, run_bin, run_bin_with_mock_tfds

# A checkpoint after every step and every epoch (--checkpoint_secs=0).
TINY = ["--layers=3", "--init_channels=4", "--batch_size=32", "--max_steps_per_epoch=2",
        "--checkpoint_every=1", "--checkpoint_secs=0"]


@pytest.mark.slow
def test_killed_training_resumes_then_evaluates_in_a_fresh_process(tmp_path):
    d = str(tmp_path / "run")
    # A non-default seed: the digits test split depends on it, and evaluate.py
    # must take it from the export's metadata. 2 steps per epoch, a checkpoint
    # every step: ckpt-3 is epoch 2, step 1.
    kill_when_exists("train.py", ["--genotype=DARTS_V1", f"--model_dir={d}", "--epochs=3",
                                  "--seed=3", *TINY],
                     os.path.join(d, "checkpoints", "ckpt-3.index"))
    assert not os.path.exists(os.path.join(d, "export"))
    # The kill lands at ckpt-3 or a step or two later on a busy machine.
    latest = int(tf.train.latest_checkpoint(os.path.join(d, "checkpoints")).rsplit("-", 1)[1])
    assert 3 <= latest < 6
    resumed = run_bin("train.py", "--genotype=DARTS_V1", f"--model_dir={d}", "--epochs=3",
                      "--seed=3", *TINY)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (f"Resuming from checkpoint: epoch {latest // 2 + 1}, step {latest % 2}"
            in resumed.stdout), resumed.stdout
    assert "Epoch 1/3" not in resumed.stdout
    history = [json.loads(l) for l in open(os.path.join(d, "history.jsonl"))]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [round(h["learning_rate"], 6) for h in history] == [0.025, 0.01875, 0.00625]
    result = json.load(open(os.path.join(d, "result.json")))
    assert result["genotype"] == DARTS_V1.to_dict()

    out = str(tmp_path / "eval")
    # On 2 mirrored replicas: 359 images in batches of 64 (the last one split
    # 20/19) must still give the run's own accuracy, image for image. The
    # export folder is given, as in the README (its saved_model/ is found).
    evaluated = run_bin("evaluate.py", f"--saved_model={d}/export",
                        f"--output_dir={out}", "--strategy=mirrored", "--num_devices=2",
                        "--batch_size=64")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"top-1 {result['test_accuracy']:.4f}" in evaluated.stdout
    assert "top-5" in evaluated.stdout and "true \\ predicted" in evaluated.stdout
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    confusion = np.asarray(metrics["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == metrics["count"] == 359
    assert metrics["top1"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert metrics["top1"] == pytest.approx(result["test_accuracy"], abs=1e-6)
    assert os.path.getsize(os.path.join(out, "confusion_matrix.png")) > 0


@pytest.mark.slow
def test_train_on_tfds_mock_cifar10_with_cutout(tmp_path):
    d = str(tmp_path / "run")
    proc = run_bin_with_mock_tfds("train.py", "--genotype=DARTS_V2", "--dataset=cifar10",
                                  f"--model_dir={d}", "--epochs=1", "--noexport", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.load(open(os.path.join(d, "config.json")))
    assert config["cutout_length"] == 16 and config["data"]["dataset"] == "cifar10"
    assert config["epochs"] == 1 and config["auxiliary"] is True
    assert not os.path.exists(os.path.join(d, "export"))
    assert json.load(open(os.path.join(d, "result.json")))["network"] == "cifar"


@pytest.mark.process
def test_visualize_writes_both_cells(tmp_path):
    proc = run_bin("visualize.py", "--genotype=DARTS_V2", f"--output={tmp_path}/v2.svg")
    assert proc.returncode == 0, proc.stderr
    written = sorted(os.listdir(tmp_path))
    assert written in (["v2_normal.svg", "v2_reduce.svg"], ["v2_normal.dot", "v2_reduce.dot"])
    if written[0].endswith(".svg"):
        assert "sep_conv_3x3" in (tmp_path / "v2_normal.svg").read_text()


def _genotype_file(tmp_path, name, **changes):
    data = DARTS_V2.to_dict()
    data.update(changes)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _tiny_npz(path, size):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (12, size, size), dtype=np.uint8)
              for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": rng.integers(0, 2, (12, 1)) for s in ("train", "val", "test")})
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("script, make_args, fragments", [
    ("train.py", lambda t: [f"--genotype={_genotype_file(t, 'g.json', normal=[['conv_9x9', 0]] + DARTS_V2.to_dict()['normal'][1:])}"],
     ["g.json: genotype: normal[0] has unknown op 'conv_9x9'"]),
    ("train.py", lambda t: ["--genotype={\"normal\": "], ["genotype: invalid JSON"]),
    ("train.py", lambda t: [f"--genotype={_genotype_file(t, 'i.json', reduce=DARTS_V2.to_dict()['reduce'][:7] + [['skip_connect', 6]])}"],
     ["reduce[7] ('skip_connect', 6) feeds node 3, whose input index must be in [0, 4]"]),
    ("train.py", lambda t: [f"--genotype={_genotype_file(t, 'n.json', normal=DARTS_V2.to_dict()['normal'][:5])}"],
     ["normal has 5 edges"]),
    ("train.py", lambda t: [], ["--genotype must have a value"]),
    ("train.py", lambda t: ["--genotype=DARTS_V2", f"--dataset={_tiny_npz(t / 's.npz', 3)}"],
     ["s.npz': images are 3x3; need at least 4x4"]),
    ("train.py", lambda t: ["--genotype=DARTS_V2", "--network=imagenet", f"--dataset={_tiny_npz(t / 'm.npz', 16)}"],
     ["images of 16x16 are too small for the imagenet network"]),
    ("train.py", lambda t: ["--genotype=DARTS_V2", "--cutout_length=-1"], ["--cutout_length=-1"]),
    ("evaluate.py", lambda t: [f"--saved_model={t / 'missing'}"], ["does not exist"]),
    ("evaluate.py", lambda t: [f"--saved_model={t}"], ["is not a SavedModel"]),
    ("visualize.py", lambda t: ["--genotype=DARTS_V2", "--output=cells.gif"], ["--output='cells.gif'"]),
    ("visualize.py", lambda t: ["--genotype=NOPE"], ["neither a file, a published name"]),
])
@pytest.mark.process
def test_bad_input_is_one_line_and_exit_2(tmp_path, script, make_args, fragments):
    d = tmp_path / "run"
    run_dir = [f"--model_dir={d}"] if script == "train.py" else []
    proc = run_bin(script, *run_dir, *make_args(tmp_path))
    assert_one_line_error(proc, *fragments)
    assert not d.exists(), "bad input must not leave a run directory behind"


@pytest.mark.slow
def test_training_under_mirrored_strategy_from_the_cli(tmp_path):
    # A fresh process must split its CPU into 2 devices before TensorFlow starts.
    d = tmp_path / "run"
    proc = run_bin("train.py", "--genotype=DARTS_V2", f"--model_dir={d}",
                   "--strategy=mirrored", "--num_devices=2", "--epochs=1", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.load(open(d / "result.json"))
    assert result["epochs"] == 1 and np.isfinite(result["test_loss"])
    assert (d / "export" / "saved_model" / "saved_model.pb").exists()
