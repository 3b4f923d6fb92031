"""Run directories on a non-local TensorFlow filesystem (``ram://``, like ``gs://``).

Everything a search and a training run write goes through ``tf.io.gfile``:
run-directory files, checkpoints, TensorBoard logs, pictures and the
export. ``ram://`` lives in this process only, so the programs run
in-process here.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf import export
from autonet_tf.configs import DataConfig, SearchConfig, TrainConfig
from autonet_tf.data import images
from autonet_tf.errors import UserInputError
from autonet_tf.evaluate import evaluate_export, write_report
from autonet_tf.search import run_search
from autonet_tf.search_space.genotypes import load_genotype
from autonet_tf.train import run_train
from autonet_tf.io import run_dir

gfile = tf.io.gfile


def _read_json(path):
    with gfile.GFile(path) as f:
        return json.loads(f.read())


@pytest.mark.slow
def test_search_train_export_and_evaluate_on_a_ram_filesystem(tmp_path):
    root = "ram://autonet_test_run"
    data = images.load(DataConfig(), 2)
    search = SearchConfig(model_dir=f"{root}/search", epochs=2, batch_size=16, layers=3,
                          init_channels=4, steps=1, multiplier=1, max_steps_per_epoch=2,
                          checkpoint_every=1, progress=False)
    result = run_search(search, dataset=data)
    for name in ("config.json", "genotype.json", "alphas.json", "history.jsonl",
                 "genotypes/epoch_002.json", "checkpoints/checkpoint"):
        assert gfile.exists(f"{root}/search/{name}"), name
    assert gfile.glob(f"{root}/search/logs/train/events.out.tfevents.*")
    assert not [p for p in gfile.listdir(f"{root}/search") if p.startswith(".")]
    assert load_genotype(f"{root}/search/genotype.json") == result.genotype
    history = run_dir.read_text(f"{root}/search/history.jsonl").splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2]
    # A rerun resumes from the checkpoint there: the search is complete.
    again = run_search(search, dataset=data)
    assert again.genotype == result.genotype

    train = TrainConfig(model_dir=f"{root}/train", genotype=f"{root}/search/genotype.json",
                        epochs=1, batch_size=32, layers=3, init_channels=4, cutout_length=0,
                        max_steps_per_epoch=2, progress=False, tflite=True)
    trained = run_train(train, dataset=images.load(train.data, train.seed))
    saved = f"{root}/train/export/saved_model"
    assert sorted(gfile.listdir(f"{root}/train/export")) == [
        "metadata.json", "model.tflite", "saved_model"]
    meta = export.read_metadata(saved)
    assert meta == _read_json(f"{root}/train/export/metadata.json")
    assert meta["genotype"] == result.genotype.to_dict()
    # The exported model, loaded from there, scores what the training run did.
    evaluation = evaluate_export(saved)
    assert evaluation.top1 == pytest.approx(trained.test_accuracy, abs=1e-6)
    written = write_report(evaluation, f"{root}/report")
    assert [gfile.exists(p) for p in written] == [True, True]
    assert _read_json(f"{root}/report/metrics.json")["top1"] == pytest.approx(evaluation.top1)


def test_ram_filesystem_writes_are_whole_and_bad_remote_paths_are_one_error(tmp_path):
    path = "ram://autonet_test_io/a/b.json"
    run_dir.write_json(path, {"x": 1})
    run_dir.write_json(path, {"x": 2})  # replaced, no temporary object left beside it
    assert run_dir.read_json(path) == {"x": 2}
    assert gfile.listdir("ram://autonet_test_io/a") == ["b.json"]
    with pytest.raises(OSError):
        run_dir.read_json("ram://autonet_test_io/missing.json")
    # An unknown filesystem: one clear error, nothing half-made.
    with pytest.raises(UserInputError, match="--model_dir='nosuchfs://x/run' is not writable"):
        run_dir.prepare("nosuchfs://x/run")
    # An npz dataset read from there.
    rng = np.random.default_rng(0)
    arrays = {f"{split}_{kind}": (rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
                                  if kind == "images" else rng.integers(0, 3, (n, 1)))
              for split, n in (("train", 12), ("test", 6)) for kind in ("images", "labels")}
    local = tmp_path / "tiny.npz"
    np.savez(local, **arrays)
    gfile.copy(str(local), "ram://autonet_test_io/tiny.npz", overwrite=True)
    dataset = images.load(DataConfig(dataset="ram://autonet_test_io/tiny.npz"))
    np.testing.assert_array_equal(dataset.x_train, arrays["train_images"])


def test_a_tuning_project_on_a_ram_filesystem_keeps_its_records_there():
    # (Only the first run: KerasTuner rewrites its trial files in place, and
    # TensorFlow's ram:// appends instead of truncating on a rewrite, so a
    # resume cannot be tested on ram://; the project's own files are written
    # to a new object and renamed, which ram:// handles.)
    from autonet_tf.tuning import parse_space, tune

    space = parse_space({"x": {"type": "float", "min": 0.0, "max": 1.0}})

    def objective(values, context):
        return {"val_loss": (values["x"] - 0.3) ** 2}

    root = "ram://autonet_test_tune"
    result = tune(objective, space, max_trials=3, directory=root, seed=1)
    project = result.directory
    assert project.startswith(root) and len(result.records) == 3
    lines = run_dir.read_text(f"{project}/trials.jsonl").splitlines()
    assert [json.loads(line)["trial_id"] for line in lines] == [
        r["trial_id"] for r in result.records]
    assert gfile.exists(f"{project}/oracle.json")
    best = _read_json(f"{project}/best_hyperparameters.json")
    assert best["hyperparameters"] == result.best_hyperparameters
    assert best["objective"]["value"] == pytest.approx(result.best_objective)
