"""What users read: --help of every program, text tables, file permissions."""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from autonet_tf.evaluate import Evaluation, format_confusion
from autonet_tf.io import run_dir
from conftest import ROOT, assert_one_line_error, run_bin


@pytest.mark.parametrize("script, expected", [
    ("search.py", ["--dataset", "--data_dir", "--strategy", "--mixed_precision", "--train_epochs",
                   "--train_batch_size", "--epochs", "Data:", "Training the network:"]),
    ("train.py", ["--epochs", "--dataset", "--batch_size", "--genotype", "--strategy",
                  "--drop_path_prob"]),
])
@pytest.mark.process
def test_help_lists_every_flag_in_groups_and_exits_0(script, expected):
    proc = run_bin(script, "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = {line.strip() for line in proc.stdout.splitlines() if line.startswith("  --")}
    for name in expected:
        assert (name in listed) if name.startswith("--") else (name in proc.stdout), name
    assert "--logtostderr" not in listed  # absl's own flags only with --helpfull


def test_confusion_table_header_lines_up_with_its_columns():
    e = Evaluation(0.1, 0.5, None, np.array([[3, 1], [0, 12]]), ["0", "1"], 16)
    header, *rows = format_confusion(e).splitlines()
    # Each class name in the header ends where its column of counts ends.
    for name, col in (("0", 0), ("1", 1)):
        end = header.index(f" {name}", len("true \\ predicted")) + 2
        for row in rows:
            assert row[:end].rstrip()[-1].isdigit() and len(row[:end].rstrip()) == end


def test_result_files_are_readable_by_others(tmp_path):
    path = tmp_path / "result.json"
    run_dir.write_json(str(path), {"a": 1})
    mode = stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask and mode & stat.S_IROTH


@pytest.mark.parametrize("name, flag", [("search", "--train_epochs"), ("train", "--epochs"),
                                        ("evaluate", "--saved_model"), ("tune", "--oracle"),
                                        ("visualize", "--genotype")])
@pytest.mark.process
def test_installed_console_programs_run_without_the_checkout(tmp_path, name, flag):
    """`pip install .` (bin/install.sh) provides autonet-<name>, runnable from anywhere."""
    import shutil
    import subprocess

    program = shutil.which(f"autonet-{name}")
    assert program, f"autonet-{name} is not installed (bash bin/install.sh)"
    proc = subprocess.run([program, "--help"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env=dict(os.environ, PYTHONPATH=""))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"  {flag}\n" in proc.stdout


@pytest.mark.parametrize("network, image_size, turned_off", [
    ("imagenet", None, True), ("auto", 224, True), ("auto", 128, True), ("auto", 64, False),
    ("auto", None, False), ("cifar", 224, False)])
@pytest.mark.process
def test_onednn_is_turned_off_only_where_the_imagenet_network_trains(network, image_size,
                                                                     turned_off):
    code = ("import os, autonet_tf.cli as c; os.environ.pop('TF_ENABLE_ONEDNN_OPTS', None); "
            f"c.avoid_onednn_crash({network!r}, {image_size!r}); "
            "print('OFF' if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0' else 'ON')")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == ("OFF" if turned_off else "ON")
    assert ("oneDNN CPU kernels off" in proc.stdout) == turned_off


@pytest.mark.parametrize("script,args", [
    ("search.py", ["--epochs=0"]),
    ("search.py", ["--model=rnn", "--nhid=-3"]),
    ("train.py", ["--genotype=DARTS_V2", "--cutout_length=-1"]),
    ("tune.py", ["--max_trials=0"]),
    ("tune.py", ["--space=iris_mlp", "--max_trials=0"]),  # read with open(), not TensorFlow
    # the search's settings (autonet_tf.tuning.checks)
    ("tune.py", ["--objective=f1"]),
    ("tune.py", ["--objective=val_auc"]),
    ("tune.py", ["--exploration=1.5"]),
    ("tune.py", ["--oracle=random", "--candidates=8"]),
    ("tune.py", ["--space=darts_search", "--trial=train_genotype"]),
    ("search.py", ["--intra_op_threads=-1"]),
    # local files and folders are read and checked without TensorFlow
    ("search.py", ["--dataset=/no/such/data.npz", "--epochs=0"]),
    ("search.py", ["--config_file=/no/such/run.yaml"]),
    ("search.py", ["--model_dir=/dev/null/run"]),  # a run directory that cannot be created
    ("search.py", ["--dataset=cifar"]),  # not a known dataset
    ("train.py", ["--genotype=DARTS_V2", "--dataset=/no/such/data.npz"]),
    ("train.py", ['--genotype={"normal": ']),
    ("train.py", ["--genotype=/no/such/genotype.json"]),
    ("train.py", ["--model=rnn", "--genotype=DARTS_V2", "--model_dir=/dev/null/run"]),
    ("visualize.py", ["--genotype=NOPE"]),
    ("evaluate.py", ["--saved_model=/no/such/export"]),
])
def test_bad_flags_are_refused_before_tensorflow_starts(script, args):
    # TensorFlow takes seconds to start; flags are checked first (a file flag
    # that names a gs:// or other TensorFlow filesystem path starts it first).
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print('tensorflow imported:', 'tensorflow' in sys.modules))\n"
            f"sys.argv = {[script, *args]!r}\n"
            f"runpy.run_path({os.path.join(ROOT, 'bin', script)!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert_one_line_error(proc)
    assert "tensorflow imported: False" in proc.stdout, proc.stdout
