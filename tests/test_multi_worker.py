"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 (TF_CONFIG).

A two-worker CNN search must end where one process with the same global
batch ends; only the chief writes run-directory outputs; a worker that gets
a termination notice makes every worker checkpoint and stop, and the rerun
resumes and finishes where an uninterrupted run would.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf.configs import SearchConfig
from autonet_tf.data import images
from autonet_tf.search_space.genotypes import Genotype
from autonet_tf.training.search_trainer import SearchTrainer
from conftest import ROOT

# One cell node and a 2-cell supernet: every BatchNorm is a cross-worker
# all-reduce, so the supernet is kept small for the suite.
TINY = dict(batch_size=16, layers=2, init_channels=4, steps=1, multiplier=1)
# The digits preset's architecture rate is set explicitly to the config default,
# which the in-process reference uses.
TINY_FLAGS = [f"--{k}={v}" for k, v in TINY.items()] + [
    "--noretrain", "--progress=false", f"--arch_learning_rate={SearchConfig.arch_learning_rate}"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(model_dirs, args, cluster):
    """Starts bin/search.py once per worker; worker i uses model_dirs[i]."""
    procs = []
    for i, d in enumerate(model_dirs):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bin", "search.py"), "--strategy=multi_worker",
             f"--model_dir={d}", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT, env=env))
    return procs


def _wait(procs, timeout=600):
    return [(p.wait(timeout=timeout), *p.communicate()) for p in procs]


def _cluster():
    return {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}


def _reference(model_dir, order, epochs, steps):
    """The same search in this process on one device (default strategy)."""
    config = SearchConfig(model_dir=str(model_dir), order=order, epochs=epochs,
                          max_steps_per_epoch=steps, progress=False, **TINY)
    config.validate()
    trainer = SearchTrainer(config, images.load(config.data, config.seed))
    initial = [np.array(a) for a in trainer.arch_variables]
    genotype = trainer.search()
    return genotype, initial, [np.array(a) for a in trainer.arch_variables]


def _checkpoint_alphas(directory):
    reader = tf.train.load_checkpoint(directory)
    return [reader.get_tensor(f"model/alphas_{kind}/.ATTRIBUTES/VARIABLE_VALUE")
            for kind in ("normal", "reduce")]


def _assert_same_search(chief_dir, reference, atol):
    genotype, initial, final = reference
    assert Genotype.from_json(open(os.path.join(chief_dir, "genotype.json")).read()) == genotype
    moved = 0.0
    for got, want, start in zip(_checkpoint_alphas(os.path.join(chief_dir, "checkpoints")),
                                final, initial):
        moved = max(moved, np.abs(want - start).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    assert moved > 20 * atol  # the alphas moved by far more than the tolerance


@pytest.mark.slow
def test_two_workers_second_order_equal_one_process_and_only_the_chief_writes(tmp_path):
    # Each worker has its own --model_dir, as on two hosts without a shared disk.
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    # The collapse guard on: its eigenvalue and its stop decision cross workers too.
    procs = _start_workers([chief, worker], ["--order=second", "--epochs=1",
                                             "--max_steps_per_epoch=3", "--collapse_guard=on",
                                             *TINY_FLAGS], _cluster())
    results = _wait(procs)
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
        assert "Final genotype: Genotype(normal=" in out
    record = json.loads((chief / "history.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["hessian_eigenvalue"])
    _assert_same_search(chief, _reference(tmp_path / "one", "second", 1, 3), atol=1e-6)
    written = {os.path.relpath(os.path.join(r, f), worker)
               for r, _, files in os.walk(worker) for f in files}
    assert written and all(p.startswith(os.path.join(".workers", "worker_1")) for p in written), \
        written
    for name in ("genotype.json", "alphas.json", "history.jsonl", "config.json"):
        assert (chief / name).exists()
    assert not (chief / ".workers").exists()


@pytest.mark.slow
def test_terminated_worker_checkpoints_the_cluster_and_the_rerun_finishes(tmp_path):
    d = tmp_path / "run"
    args = ["--order=first", "--epochs=1", "--max_steps_per_epoch=24", "--checkpoint_every=2",
            *TINY_FLAGS]
    cluster = _cluster()
    procs = _start_workers([d, d], args, cluster)
    marker = d / "checkpoints" / "checkpoint"
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and procs[1].poll() is None:
        time.sleep(0.1)
    assert procs[1].poll() is None, procs[1].communicate()[1][-3000:]
    procs[1].send_signal(signal.SIGTERM)  # a preemption notice to worker 1
    results = _wait(procs)
    saved = tf.train.latest_checkpoint(str(d / "checkpoints"))
    for rc, _, err in results:
        # tf.distribute's restart code; one line, no traceback.
        assert rc == 42, err[-3000:]
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("error: preempted")
    step = int(saved.rsplit("-", 1)[1])
    assert 2 < step < 24, saved  # saved at the notice, not only at a periodic save
    assert tf.train.latest_checkpoint(str(d / ".workers" / "worker_1")).endswith(f"-{step}")

    results = _wait(_start_workers([d, d], args, _cluster()))
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    assert f"Resuming from checkpoint: epoch 1, step {step}" in results[0][1]
    # Summation order differs between 2 workers and 1 device; Adam's
    # normalised steps carry that drift (1.6e-5 after 24 steps, the same with
    # and without the interruption; one Adam step is 3e-4).
    _assert_same_search(d, _reference(tmp_path / "one", "first", 1, 24), atol=5e-5)
