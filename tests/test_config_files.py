"""--config_file and --params_override onto the config dataclasses; a run repeated
from its own config.json."""

import json
import os

import numpy as np
import pytest

from autonet_tf import config_files
from autonet_tf.configs import DataConfig, SearchConfig, TrainConfig
from autonet_tf.errors import UserInputError
from conftest import assert_one_line_error, run_bin


def test_overrides_parse_nested_keys_yaml_values_and_commas_inside_values():
    values = config_files.parse_overrides(
        "epochs=5,data.dataset=cifar10,arch_learning_rate=3e-4,flags=[1, 2],jit_compile=true,"
        "tpu=null")
    assert values == {"epochs": 5, "data": {"dataset": "cifar10"}, "arch_learning_rate": 3e-4,
                      "flags": [1, 2], "jit_compile": True, "tpu": None}
    with pytest.raises(UserInputError, match="is not key=value"):
        config_files.parse_overrides("epochs")


def test_merge_sets_nested_fields_keeps_given_flags_and_names_unknown_keys():
    config = SearchConfig(epochs=50, data=DataConfig(dataset="digits"))
    merged = config_files.merge(
        config, {"epochs": 3, "learning_rate": 1, "data": {"dataset": "mnist",
                                                             "test_fraction": 0.5}},
        "--config_file='x'", keep=lambda path: path == "data.dataset")
    assert merged.epochs == 3 and merged.data.test_fraction == 0.5
    assert merged.data.dataset == "digits"  # the flag given on the command line wins
    assert isinstance(merged.learning_rate, float) and merged.learning_rate == 1.0
    assert config.epochs == 50  # the original is untouched
    with pytest.raises(UserInputError, match="no field 'epoch' .did you mean epochs"):
        config_files.merge(config, {"epoch": 3}, "--params_override")
    with pytest.raises(UserInputError, match="'data' must be a mapping"):
        config_files.merge(config, {"data": 3}, "--params_override")


def test_a_training_record_gives_its_genotype_and_never_its_model_dir(tmp_path):
    record = TrainConfig(model_dir="runs/old").to_dict()
    record["genotype_spec"] = {"type": "cnn", "normal": [["skip_connect", 0]]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(record))  # json.dumps writes 3e-05 (YAML 1.1: a string)
    values = config_files.file_values(str(path))
    assert "model_dir" not in values
    assert json.loads(values["genotype"]) == record["genotype_spec"]
    assert values["weight_decay"] == record["weight_decay"] and isinstance(
        values["weight_decay"], float)


@pytest.mark.slow
def test_a_search_repeated_from_its_config_json_is_the_same_search(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text("epochs: 2\nlayers: 2\ninit_channels: 4\nsteps: 1\nmultiplier: 1\n"
                    "batch_size: 16\nmax_steps_per_epoch: 2\ndata:\n  test_fraction: 0.25\n")
    first, again = str(tmp_path / "first"), str(tmp_path / "again")
    proc = run_bin("search.py", f"--config_file={spec}", f"--model_dir={first}",
                   "--params_override=arch_learning_rate=0.02,seed=3", "--epochs=1",
                   "--noretrain", "--noprogress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.load(open(os.path.join(first, "config.json")))
    # file values, the flag given (epochs=1 outranks the file's 2), the overrides
    assert (config["layers"], config["steps"], config["epochs"]) == (2, 1, 1)
    assert config["arch_learning_rate"] == 0.02 and config["seed"] == 3
    assert config["data"]["test_fraction"] == 0.25
    proc = run_bin("search.py", f"--config_file={first}/config.json", f"--model_dir={again}",
                   "--noretrain", "--noprogress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    repeated = json.load(open(os.path.join(again, "config.json")))
    assert {k: v for k, v in repeated.items() if k != "model_dir"} == {
        k: v for k, v in config.items() if k != "model_dir"}
    a = json.load(open(os.path.join(first, "alphas.json")))
    b = json.load(open(os.path.join(again, "alphas.json")))
    np.testing.assert_array_equal(np.asarray(a["normal"]), np.asarray(b["normal"]))
    bad = run_bin("search.py", f"--config_file={spec}", "--params_override=epochz=1",
                  f"--model_dir={tmp_path / 'bad'}")
    assert_one_line_error(bad, "--params_override: SearchConfig has no field 'epochz'")
    assert not os.path.exists(tmp_path / "bad")
    # A scheme no TensorFlow filesystem handles: one line too (it was a traceback).
    unknown = run_bin("search.py", "--config_file=foo://x.yaml", f"--model_dir={tmp_path / 'bad'}")
    assert_one_line_error(unknown, "--config_file='foo://x.yaml' does not exist")
