"""Hyperparameter search (and random-search NAS) with KerasTuner oracles.

    python bin/tune.py                                          # iris MLP, weighted random
    python bin/tune.py --space=simple_cnn --oracle=random --dataset=octmnist.npz
    python bin/tune.py --space=my_space.yaml --oracle=bayesian --max_trials=30
    python bin/tune.py --workers=2                              # chief + 2 local workers

--space is a YAML file or a shipped space (iris_mlp, simple_cnn,
darts_search). Rerunning the same command resumes: finished trials are not
repeated. Results land in <directory>/search/: trials.jsonl,
best_hyperparameters.json, objective.png, val_accuracy.png and TensorBoard
HParams logs (logs/hparams).

Several hosts: start the chief with --role=chief (it binds --chief_address,
127.0.0.1 by default; use 0.0.0.0 or a host address to accept other hosts)
and one --role=worker process per worker with the chief's address, all with
the same flags otherwise (see README.md).

Devices: every trial of a process runs under --strategy (e.g. mirrored over
--num_devices devices); --workers=N --devices_per_worker=K gives each local
worker its own K GPUs (CUDA_VISIBLE_DEVICES), or K logical CPU devices on a
machine without GPUs.
"""

import os
import socket
import subprocess
import sys
import time

from absl import flags

from autonet_tf import cli, cli_flags
from autonet_tf.tuning.checks import ORACLES

flags.DEFINE_string("space", "iris_mlp", "YAML space file, or iris_mlp, simple_cnn, "
                    "darts_search (shipped with the package).")
flags.DEFINE_enum("oracle", "weighted_random", ORACLES,
                  "Search algorithm (hyperband: trials get epoch budgets up to "
                  "--epochs_per_trial).")
flags.DEFINE_bool("median_stopping", False, "Stop a trial whose objective at an epoch is "
                  "worse than the median of finished trials at that epoch (any oracle).")
flags.DEFINE_float("exploration", None, "weighted_random only: share of trials drawn "
                   "uniformly, and least margin (half of it) of the box around the two best "
                   "points; 0: the plain algorithm (default 0.2).")
flags.DEFINE_integer("candidates", None, "weighted_random only: points drawn per trial for "
                     "a Gaussian-process model to rank by expected improvement (1: no model; "
                     "default 64).")
flags.DEFINE_integer("max_trials", 10, "Number of trials.")
flags.DEFINE_string("objective", None, "Metric to optimise, NAME[:min|max] (default: the "
                    "space's objective, else val_loss:min).")
flags.DEFINE_string("directory", None, "Results directory (default runs/tune_<space>).")
flags.DEFINE_integer("seed", 0, "Seed of the oracle and of every trial.")
flags.DEFINE_string("dataset", None, "Dataset of the trials (mlp: iris, wine, breast_cancer, "
                    "digits or a numeric .csv; image trials: as bin/search.py).")
flags.DEFINE_integer("epochs_per_trial", 10, "Training epochs of each trial.")
flags.DEFINE_string("trial", None, "What a trial trains (mlp, simple_cnn, darts_search, "
                    "train_genotype); default: the space's 'trial'.")
flags.DEFINE_integer("workers", 0, "Run this many local worker processes against one chief "
                     "process (0: trials run in this process).")
flags.DEFINE_enum("role", None, ["chief", "worker"], "Distributed role of this process "
                  "(set by --workers, or by hand for several hosts).")
flags.DEFINE_string("chief_address", "127.0.0.1", "Address the chief binds / workers connect to.")
flags.DEFINE_integer("chief_port", 8000, "Port of the chief.")
flags.DEFINE_string("worker_id", None, "Worker name for --role=worker (default tuner<pid>).")
flags.DEFINE_integer("chief_timeout", 60, "Seconds a worker waits for the chief to answer.")
flags.DEFINE_integer("worker_restarts", 2, "With --workers: restarts of a worker that dies.")
flags.DEFINE_integer("devices_per_worker", None, "With --workers: devices of each worker "
                     "process (its own GPUs through CUDA_VISIBLE_DEVICES; without GPUs, "
                     "logical CPU devices); its trials run mirrored over them when more than 1.")
cli_flags.define_strategy_flags()
FLAGS = flags.FLAGS


def _visible_gpus() -> list[str]:
    """The GPU ids this launcher may hand out: CUDA_VISIBLE_DEVICES when set, else all."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import tensorflow as tf

    return [str(i) for i in range(len(tf.config.list_physical_devices("GPU")))]


def worker_devices(workers: int, per_worker: int, gpus: list[str]) -> list[dict]:
    """Environment and flags of each local worker for --devices_per_worker.

    With GPUs, worker i gets GPUs i*K .. i*K+K-1 as its CUDA_VISIBLE_DEVICES;
    without, K logical CPU devices. Raises UserInputError when N*K GPUs are
    more than there are.
    """
    from autonet_tf.errors import UserInputError

    if not gpus:
        return [{"env": {"CUDA_VISIBLE_DEVICES": ""}, "num_devices": per_worker}
                for _ in range(workers)]
    if workers * per_worker > len(gpus):
        raise UserInputError(
            f"--workers={workers} --devices_per_worker={per_worker} needs "
            f"{workers * per_worker} GPUs; this host has {len(gpus)} ({','.join(gpus)})")
    return [{"env": {"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per_worker:(i + 1) * per_worker])},
             "num_devices": per_worker} for i in range(workers)]


def _free_port(address):
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _wait_for_chief(address, port, timeout):
    deadline = time.time() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                return
        except OSError:
            if time.time() > deadline:
                cli.fail(f"cannot reach the chief at {address}:{port} after {timeout} s "
                         f"(--chief_address/--chief_port; is the chief running?)")
            time.sleep(0.5)


def _spawn_local_cluster(placement: list[dict]):
    """--workers=N: one chief and N worker processes of this program; returns exit code.

    ``placement``: each worker's environment and --num_devices (see worker_devices).

    A worker that dies (killed, crashed) is restarted under the same worker id,
    up to --worker_restarts times: the chief hands a returning id its unfinished
    trial again, so that trial is retried and nothing else is lost.
    """
    port = _free_port(FLAGS.chief_address)
    argv = [a for a in sys.argv[1:] if not a.startswith(
        ("--workers", "--role", "--chief_port", "--devices_per_worker", "--num_devices",
         "--strategy"))]
    # This program again, as a module: the package's parent on the path, so a
    # checkout that is not installed works too.
    import autonet_tf

    root = os.path.dirname(os.path.dirname(os.path.abspath(autonet_tf.__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    base = [sys.executable, "-m", "autonet_tf.programs.tune", *argv, f"--chief_port={port}"]
    # The chief only hands out trials: it needs no device and no strategy.
    chief = subprocess.Popen(base + ["--role=chief"],
                             env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))

    def start(i):
        strategy = FLAGS.strategy
        num_devices = placement[i]["num_devices"]
        if FLAGS.devices_per_worker is not None and FLAGS.devices_per_worker > 1:
            strategy = "mirrored"
        extra = [f"--strategy={strategy}"] + (
            [f"--num_devices={num_devices}"] if num_devices else [])
        return subprocess.Popen(base + extra + ["--role=worker", f"--worker_id=tuner{i}"],
                                env=dict(os.environ, **placement[i]["env"]))

    workers = {i: start(i) for i in range(FLAGS.workers)}
    restarts = dict.fromkeys(workers, 0)
    codes = {}
    while len(codes) < len(workers):
        time.sleep(0.5)
        for i, proc in workers.items():
            if i in codes or proc.poll() is None:
                continue
            if proc.returncode not in (0, 2) and restarts[i] < FLAGS.worker_restarts \
                    and chief.poll() is None:
                restarts[i] += 1
                print(f"worker tuner{i} exited with code {proc.returncode}; restarting it "
                      f"({restarts[i]}/{FLAGS.worker_restarts}); its trial runs again",
                      flush=True)
                workers[i] = start(i)
            else:
                codes[i] = proc.returncode
    try:
        chief.wait(timeout=120)
    except subprocess.TimeoutExpired:
        chief.terminate()
        chief.wait()
    bad = [c for c in codes.values() if c] + ([chief.returncode] if chief.returncode else [])
    return bad[0] if bad else 0


def main(argv):
    del argv
    for name in ("max_trials", "epochs_per_trial", "chief_timeout"):
        if FLAGS[name].value <= 0:
            cli.fail(f"--{name}={FLAGS[name].value} is invalid: expected an integer > 0")
    if FLAGS.workers < 0:
        cli.fail(f"--workers={FLAGS.workers} is invalid: expected an integer >= 0")
    if FLAGS.devices_per_worker is not None:
        if FLAGS.devices_per_worker <= 0:
            cli.fail(f"--devices_per_worker={FLAGS.devices_per_worker} is invalid: expected "
                     f"an integer > 0")
        if not FLAGS.workers:
            cli.fail("--devices_per_worker needs --workers=N (local worker processes); by "
                     "hand, give each process its devices with CUDA_VISIBLE_DEVICES")
        if FLAGS.strategy not in ("default", "mirrored"):
            cli.fail(f"--devices_per_worker runs each worker's trials mirrored over its "
                     f"devices; --strategy={FLAGS.strategy} cannot be combined with it")
        if FLAGS.num_devices is not None:
            cli.fail("--devices_per_worker sets each worker's --num_devices; pass one of them")
    if FLAGS.num_devices is not None and FLAGS.num_devices <= 0:
        cli.fail(f"--num_devices={FLAGS.num_devices} is invalid: expected an integer > 0")
    from autonet_tf.tuning.checks import check_settings
    from autonet_tf.tuning.space import builtin_space_path, load_space

    path = FLAGS.space
    if not os.path.exists(path) and os.path.exists(builtin_space_path(path)):
        path = builtin_space_path(path)
    space = load_space(path)
    trial = FLAGS.trial or space.trial
    if trial is None:
        cli.fail(f"--space={FLAGS.space!r} names no 'trial:' to run; pass --trial")
    check_settings(trial, space, oracle=FLAGS.oracle, objective=FLAGS.objective,
                   exploration=FLAGS.exploration, candidates=FLAGS.candidates)
    stem = os.path.splitext(os.path.basename(path))[0]
    directory = FLAGS.directory or os.path.join("runs", f"tune_{stem}")
    cli.start_tensorflow()
    from autonet_tf.tuning.api import build_tuner, resolve_objective, result_of, summary_table
    from autonet_tf.tuning.tuner import best_record

    def tuner_of(strategy=None):
        return build_tuner(trial, space, oracle=FLAGS.oracle, max_trials=FLAGS.max_trials,
                           objective=FLAGS.objective, directory=directory, seed=FLAGS.seed,
                           dataset=FLAGS.dataset, epochs_per_trial=FLAGS.epochs_per_trial,
                           exploration=FLAGS.exploration, candidates=FLAGS.candidates,
                           strategy=strategy,
                           median_stopping=FLAGS.median_stopping)

    if FLAGS.workers and FLAGS.role is None:
        # Validate everything once in this process before starting others.
        placement = ([{"env": {}, "num_devices": FLAGS.num_devices}] * FLAGS.workers
                     if FLAGS.devices_per_worker is None else
                     worker_devices(FLAGS.workers, FLAGS.devices_per_worker, _visible_gpus()))
        tuner_of()
        print(f"Tuning {stem} with {FLAGS.oracle}: {FLAGS.max_trials} trials of {trial} on "
              f"one chief and {FLAGS.workers} worker processes (each starts TensorFlow first: "
              f"a few seconds) ...", flush=True)
        sys.exit(_spawn_local_cluster(placement))  # the chief prints the summary
    else:
        if FLAGS.role:
            os.environ["KERASTUNER_ORACLE_IP"] = FLAGS.chief_address
            os.environ["KERASTUNER_ORACLE_PORT"] = str(FLAGS.chief_port)
            os.environ["KERASTUNER_TUNER_ID"] = (
                "chief" if FLAGS.role == "chief" else FLAGS.worker_id or f"tuner{os.getpid()}")
            if FLAGS.role == "worker":
                _wait_for_chief(FLAGS.chief_address, FLAGS.chief_port, FLAGS.chief_timeout)
        strategy = None
        if FLAGS.role != "chief":  # the chief only hands out trials
            from autonet_tf.distribute.strategy import strategy_for

            strategy = strategy_for(FLAGS)
        tuner = tuner_of(strategy)
        if FLAGS.role is None:
            done = len(tuner.oracle.read_records())
            print(f"Tuning {stem} with {FLAGS.oracle}: {FLAGS.max_trials} trials of {trial}"
                  + (f" ({done} finished before; resuming)" if done else "") + " ...",
                  flush=True)
        tuner.search()
        if FLAGS.role == "worker":
            return
        result = result_of(tuner)
    objective = resolve_objective(space, FLAGS.objective)
    print(summary_table(result.records, objective.name))
    if result.best_hyperparameters is not None:
        best = best_record(result.records, objective.direction)
        print(f"Best trial {best['trial_id']}: {objective.name}={best['objective']:.5g} "
              f"{best['hyperparameters']}")
    print(f"Results: {result.directory}")
    if result.stop_reason:
        cli.fail(f"search stopped: {result.stop_reason}", code=1)


def run() -> None:
    """The console entry point ``autonet-tune``."""
    cli.run(main, flags_first=True)


if __name__ == "__main__":
    run()
