"""Running a hyperparameter search: KerasTuner's loop, our trials, durable results.

:class:`TrialTuner` is a KerasTuner ``BaseTuner`` whose ``run_trial`` calls a
trial function (:mod:`autonet_tf.tuning.trials`). KerasTuner keeps the trial
bookkeeping and its project directory, so rerunning the same command
resumes and finished trials are not repeated; in distributed mode the same
tuner runs as chief or worker.

The oracle records what the chief sees (:class:`RecordingMixin`), in
``<directory>/<project>/``:

    trials.jsonl              one line per ended trial: id, status, hyperparameters,
                              objective, val_accuracy, seconds, final and per-epoch
                              metrics, error message
    best_hyperparameters.json the best trial's values and final metrics (``accuracy``
                              there is training accuracy, ``val_accuracy`` validation)
    objective.png, val_accuracy.png  against trial id, with best-so-far lines
    logs/hparams/             TensorBoard HParams dashboard (one run per trial)

Non-finite objectives and trials that raise are recorded as FAILED (one
line printed, the traceback kept in the trial's folder as ``error.txt``) and
the search goes on, unless two trials in a row fail with the same error: that
error is shared by every trial (a missing file, a bad parameter), so the
search stops and says so (:attr:`RecordingMixin.stop_reason`).

Median stopping (``median_stopping=True``, any oracle): from epoch
``MEDIAN_GRACE_EPOCHS + 1`` on, a trial whose objective at an epoch is worse
than the median of the finished trials' objectives at that epoch (at least
``MEDIAN_MIN_TRIALS`` of them) is told to stop; it ends with its last
epoch's metrics and is recorded as STOPPED (not FAILED), with the epoch.

Hyperband (``--oracle=hyperband``): KerasTuner's oracle hands each trial its
epoch budget (``tuner/epochs``); trials train that many epochs from scratch
(no warm start from the trial they continue), and the record keeps the
bracket, round and epochs under ``hyperband``.

Resume: the oracle's state (``oracle.json``) is reloaded by whichever
process owns the oracle, the in-process tuner or the chief, so a rerun in
either mode, with any number of workers, goes on where the last one stopped:
finished trials are never repeated and their records never overwritten.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import statistics
import time
import traceback
import warnings

import keras_tuner as kt
from keras_tuner.engine import trial as trial_module
# KerasTuner's private names are used here and nowhere else in the project:
# - its DEBUG switch (on by default) prints the full traceback of every failed
#   trial; we print one line per trial and keep the traceback in its folder;
# - the chief's gRPC servicer (see _serve_trials): KerasTuner's own server
#   loop checks for the end of the search every 20 s, a wait users saw as a
#   hang after the last trial.
from keras_tuner.src import config as _kt_config

from autonet_tf import progress
from autonet_tf.errors import UserInputError

from autonet_tf.io import run_dir
from autonet_tf.tuning.trials import TrialContext

TRIALS_FILE = "trials.jsonl"
FINAL_MARK = "__final__"  # marks the report of a trial's final metrics
# KerasTuner's gRPC messages carry a trial's metrics (name -> float) but not
# its message, so what the chief must know besides metrics (where the trial
# ran, the traceback of a trial that raised) travels as one metric whose name
# is JSON, beside this mark; the chief takes it out before KerasTuner sees it.
INFO_MARK = "__info__"
BEST_FILE = "best_hyperparameters.json"
ERROR_FILE = "error.txt"  # in trial_<id>/: the traceback of a trial that raised
MEDIAN_MIN_TRIALS = 3  # finished trials needed at an epoch before median stopping acts
MEDIAN_GRACE_EPOCHS = 1  # epochs every trial runs before it can be stopped
HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
                  "tuner/trial_id")
ACCURACY = "val_accuracy"  # the accuracy shown beside the objective (validation)
SETTINGS_FILE = "tuning.json"  # what a resumed search must keep equal


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _save_state(path: str, state: dict) -> None:
    """KerasTuner's state files (oracle.json, trial.json, the tuner's), written
    whole: a temporary file renamed over the old one. KerasTuner writes them in
    place, so a process killed mid-write left a truncated file that the resume
    could not read."""
    run_dir.write_text(path, json.dumps(state))


class RecordingMixin:
    """Chief-side recording of every trial's epochs and outcome (see the module docstring)."""

    verbose_records = True  # print each epoch report and each ended trial
    summaries = True  # best JSON, plots, HParams after every trial (off: call write_summaries)
    median_stopping = False  # see the module docstring

    def save(self):
        _save_state(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        _save_state(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
                    trial.get_state())

    def _records_path(self):
        return os.path.join(self._project_dir, TRIALS_FILE)

    def read_records(self) -> list[dict]:
        """The ended trials: trials.jsonl read once, then kept as this oracle writes it.

        Only the process that owns the oracle writes the file, so the copy in
        memory stays true; median stopping reads it at every epoch report.
        """
        if getattr(self, "_ended_records", None) is None:
            self._ended_records = read_records(self._project_dir)
        return list(self._ended_records)

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        # A plain dict: over gRPC this is a protobuf map, whose missing keys
        # read as 0.0 instead of raising.
        if INFO_MARK in metrics:
            info = self.__dict__.setdefault("_info", {}).setdefault(trial_id, {})
            info.update(json.loads(next(k for k in metrics if k != INFO_MARK)))
            return self.trials[trial_id]
        final = FINAL_MARK in metrics
        metrics = {k: float(v) for k, v in metrics.items() if k != FINAL_MARK}
        result = super().update_trial(trial_id, metrics, step=step)
        if not final and self.verbose_records:
            shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                             if isinstance(v, (int, float)))
            progress.say(f"[trial {trial_id}] epoch {step}: {shown}")
        if not final and self.median_stopping:
            median = self._median_at(step)
            value = metrics.get(self.objective.name)
            if median is not None and value is not None and (
                    value > median if self.objective.direction == "min" else value < median):
                if self.verbose_records:
                    progress.say(f"[trial {trial_id}] stopped early at epoch {step}: "
                                 f"{self.objective.name}={value:.4g} is worse than the median "
                                 f"{median:.4g} of earlier trials at that epoch")
                # The tuner reads the status of what this returns (also over gRPC).
                result = copy.copy(result)
                result.status = trial_module.TrialStatus.STOPPED
        return result

    def _median_at(self, epoch: int):
        """Median objective of finished trials at ``epoch`` (None: too few, or too early)."""
        if epoch <= MEDIAN_GRACE_EPOCHS:
            return None
        name = self.objective.name
        values = [r["epochs"][name][epoch - 1] for r in self.read_records()
                  if r["status"] == "COMPLETED" and len(r["epochs"].get(name, ())) >= epoch]
        if len(values) < MEDIAN_MIN_TRIALS:
            return None
        return float(statistics.median(values))

    def score_trial(self, trial):
        # The final value counts (KerasTuner would take the best epoch's).
        history = trial.metrics.metrics[self.objective.name].get_history()
        last = max(history, key=lambda o: o.step)
        trial.score = float(last.value[0])
        trial.best_step = last.step

    @kt.synchronized
    def end_trial(self, trial):
        started = getattr(self, "_started", {})
        super().end_trial(trial)
        # KerasTuner saves its state before it drops the trial from the ongoing
        # ones; only the in-process tuner saves again afterwards. Saved here,
        # a chief's last trials are not taken for unfinished on a resume.
        self.save()
        trial = self.trials[trial.trial_id]
        if trial.status == trial_module.TrialStatus.COMPLETED and not _finite(trial.score):
            trial.status = trial_module.TrialStatus.FAILED
            trial.message = f"objective {self.objective.name} is {trial.score}"
            self._save_trial(trial)
        if trial.status not in (trial_module.TrialStatus.COMPLETED,
                                trial_module.TrialStatus.FAILED):
            return  # INVALID with retries left: it runs again
        metrics = {}
        epochs = {}
        for name, history in trial.metrics.metrics.items():
            observations = history.get_history()
            if not observations:
                continue
            observations = sorted(observations, key=lambda o: o.step)
            metrics[name] = float(observations[-1].value[0])
            # The last observation is the final report, not an epoch.
            epochs[name] = [float(o.value[0]) for o in observations[:-1]]
        info = dict(getattr(self, "_info", {}).get(trial.trial_id, {}))
        if "traceback" in info:  # sent by the tuner that ran it (also over gRPC)
            trial.message = info.pop("traceback")
        error = _error_line(trial.message)
        if _raised(trial.message):
            run_dir.write_text(os.path.join(self._get_trial_dir(trial.trial_id), ERROR_FILE),
                               trial.message)
        values = dict(trial.hyperparameters.values)
        budget = {k.split("/", 1)[1]: values.pop(k) for k in HYPERBAND_KEYS if k in values}
        stopped = info.pop("stopped_at_epoch", None)
        record = {
            "trial_id": trial.trial_id,
            "status": "STOPPED" if stopped and trial.status == "COMPLETED" else trial.status,
            "hyperparameters": values,
            "objective": trial.score if _finite(trial.score) else None,
            ACCURACY: metrics.get(ACCURACY),
            "seconds": round(time.time() - started.get(trial.trial_id, time.time()), 3),
            "metrics": metrics,
            "epochs": epochs,
            "message": error,
            **info,  # tuner, strategy, replicas, devices (and visible GPUs)
        }
        if stopped:
            record["stopped_at_epoch"] = stopped
        if budget:
            record["hyperband"] = budget
        records = self.read_records()
        if any(r["trial_id"] == trial.trial_id for r in records):
            return  # ended before (a worker that came back): its record stands
        records.append(record)
        run_dir.write_text(self._records_path(),
                           "".join(json.dumps(r) + "\n" for r in records))
        self._ended_records = records
        status = ("FAILED" if record["objective"] is None
                  else f"{self.objective.name}={record['objective']:.5g}"
                  + (f" (stopped at epoch {stopped})" if stopped else ""))
        if self.verbose_records:
            progress.say(f"[trial {trial.trial_id}] {status} in {record['seconds']:.1f} s "
                         f"{record['hyperparameters']}" + (f": {error}" if error else ""))
        self._check_shared_failure(trial)
        if self.summaries:
            write_summaries(self, records)

    def _check_shared_failure(self, trial):
        """Two trials in a row that raised the same error stop the search."""
        if not _raised(trial.message) or len(self.end_order) < 2:
            return
        previous = self.trials[self.end_order[-2]]
        if previous.trial_id == trial.trial_id or not _raised(previous.message):
            return
        if _error_line(previous.message) == _error_line(trial.message):
            self.stop_reason = (
                f"trials {previous.trial_id} and {trial.trial_id} failed with the same error, "
                f"so every trial would: {_error_line(trial.message)} (traceback: "
                f"{os.path.join(self._get_trial_dir(trial.trial_id), ERROR_FILE)})")

    @kt.synchronized
    def create_trial(self, tuner_id):
        if getattr(self, "stop_reason", None):
            # As KerasTuner does when the budget is spent: the asking tuner stops.
            self.tuner_ids.discard(tuner_id)
            return trial_module.Trial(self.get_space(), trial_id="stopped",
                                      status=trial_module.TrialStatus.STOPPED)
        trial = super().create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.RUNNING:
            if not hasattr(self, "_started"):
                self._started = {}
            self._started.setdefault(trial.trial_id, time.time())
        return trial


def _serve_trials(oracle, poll_s: float = 0.5) -> None:
    """The chief: serves the oracle to the workers until the search is over.

    As KerasTuner's ``oracle_chief.start_server``, but the end (budget spent
    or search stopped, no trial running, every worker told) is noticed within
    ``poll_s`` seconds instead of 20.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(
        f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_s)
    finally:
        server.stop(grace=1.0)


def _raised(message) -> bool:
    """Whether a trial's message is the traceback of an exception it raised."""
    return bool(message) and message.startswith("Traceback")


def _error_line(message) -> str | None:
    """The last line of a failure message, without the exception's module path."""
    lines = (message or "").strip().splitlines()
    if not lines:
        return None
    kind, sep, text = lines[-1].partition(": ")
    return f"{kind.rsplit('.', 1)[-1]}{sep}{text}"


def read_records(project_dir: str) -> list[dict]:
    """The ended trials recorded in ``project_dir/trials.jsonl`` (empty if none)."""
    path = os.path.join(project_dir, TRIALS_FILE)
    if not run_dir.exists(path):
        return []
    return [json.loads(line) for line in run_dir.read_text(path).splitlines() if line.strip()]


def best_record(records: list[dict], direction: str) -> dict | None:
    """The finished trial with the best objective (None when no trial finished).

    Trials stopped early count only when no trial ran to its end.
    """
    done = [r for r in records if r["objective"] is not None and r["status"] == "COMPLETED"]
    done = done or [r for r in records if r["objective"] is not None]
    if not done:
        return None
    return (min if direction == "min" else max)(done, key=lambda r: r["objective"])


def write_summaries(oracle, records: list[dict]) -> None:
    """best_hyperparameters.json, the two plots and the HParams logs."""
    d = oracle._project_dir
    direction = oracle.objective.direction
    best = best_record(records, direction)
    if best is not None:
        run_dir.write_json(os.path.join(d, BEST_FILE), {
            "trial_id": best["trial_id"], "objective": {
                "name": oracle.objective.name, "direction": direction,
                "value": best["objective"]},
            "hyperparameters": best["hyperparameters"], "metrics": best["metrics"]})
    plot_progress(records, oracle.objective.name, direction, d)
    log_hparams(records, oracle.objective.name, os.path.join(d, "logs", "hparams"))


def _best_so_far(values, direction):
    best, out = None, []
    for v in values:
        if v is not None and math.isfinite(v):
            best = v if best is None else (min(best, v) if direction == "min" else max(best, v))
        out.append(best)
    return out


def plot_progress(records: list[dict], objective: str, direction: str, directory: str) -> None:
    """objective.png and val_accuracy.png: values per trial id and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(records, key=lambda r: int(r["trial_id"]))
    x = [int(r["trial_id"]) for r in ordered]  # the ids of trials.jsonl and trial_<id>/
    for key, name, best_dir in (("objective", objective, direction),
                                (ACCURACY, ACCURACY, "max")):
        values = [r.get(key) for r in ordered]
        fig, ax = plt.subplots(figsize=(6, 4))
        points = [(a, v) for a, v, r in zip(x, values, ordered)
                  if v is not None and r["status"] != "STOPPED"]
        stopped = [(a, v) for a, v, r in zip(x, values, ordered)
                   if v is not None and r["status"] == "STOPPED"]
        if points:
            ax.plot(*zip(*points), "o", label=name)
        if stopped:
            ax.plot(*zip(*stopped), "x", color="grey", label="stopped early")
        points += stopped
        best = _best_so_far([None if r["status"] == "STOPPED" else v
                             for v, r in zip(values, ordered)], best_dir)
        steps = [(a, b) for a, b in zip(x, best) if b is not None]
        if steps:
            ax.step(*zip(*steps), where="post", label="best so far")
        ax.set_xlabel("trial id")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(name)
        if points:
            ax.legend()
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        run_dir.write_bytes(os.path.join(directory, f"{key}.png"), buffer.getvalue())


def log_hparams(records: list[dict], objective: str, logdir: str) -> None:
    """TensorBoard HParams dashboard: one run per finished trial (written once)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams

    for r in records:
        run = os.path.join(logdir, f"trial_{r['trial_id']}")
        if run_dir.exists(run) or r["objective"] is None:
            continue
        values = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
                  for k, v in r["hyperparameters"].items()}
        with tf.summary.create_file_writer(run).as_default():
            hparams.hparams(values, trial_id=r["trial_id"])
            tf.summary.scalar(objective, r["objective"], step=0)
            if r.get(ACCURACY) is not None:
                tf.summary.scalar(ACCURACY, r[ACCURACY], step=0)


class TrialTuner(kt.engine.base_tuner.BaseTuner):
    """Runs ``trial_fn(values, context)`` for each trial the oracle hands out."""

    def __init__(self, oracle, trial_fn, dataset=None, epochs_per_trial=5, seed=0,
                 settings=None, strategy=None, **kwargs):
        super().__init__(oracle, **kwargs)
        self.strategy = strategy
        if not self._is_worker():
            self._resume(settings or {})
        self.trial_fn = trial_fn
        self.dataset = dataset
        self.epochs_per_trial = epochs_per_trial
        self.seed = seed

    def save(self):
        """As KerasTuner's, with the state files written whole (:func:`_save_state`)."""
        if not self._is_worker():
            self.oracle.save()
        _save_state(self._get_tuner_fname(), self.get_state())

    def search(self, *args, **kwargs):
        if os.environ.get("KERASTUNER_ORACLE_IP") and "chief" in self.tuner_id:
            self.save()
            _serve_trials(self.oracle)
            return
        debug = _kt_config.DEBUG
        _kt_config.DEBUG = False  # one line per failed trial, not its traceback
        try:
            with warnings.catch_warnings():
                # We report metrics to the oracle ourselves (per epoch, then final),
                # which KerasTuner calls deprecated after every trial.
                warnings.filterwarnings("ignore", message="The use case of calling",
                                        category=DeprecationWarning)
                super().search(*args, **kwargs)
        finally:
            _kt_config.DEBUG = debug

    def _resume(self, settings: dict) -> None:
        """Reloads the oracle's state whoever wrote it; refuses changed settings.

        KerasTuner reloads only when this tuner id's own file exists, and the
        in-process tuner ("tuner0") and the chief ("chief") have different
        ids: without this, a plain rerun after a --workers run (or the other
        way round) would start again at trial 0 and overwrite every record.
        """
        project = self.project_dir
        state = os.path.join(project, "oracle.json")
        records = read_records(project)
        if run_dir.exists(state):
            if not self.oracle.trials:
                self.oracle.reload()
        elif records:
            raise UserInputError(
                f"{project} holds {len(records)} trial records but no oracle state "
                f"(oracle.json): it cannot be resumed; pass another --directory")
        path = os.path.join(project, SETTINGS_FILE)
        settings = json.loads(json.dumps(settings))  # tuples as lists, as read back
        if run_dir.exists(path):
            saved = run_dir.read_json(path)
            changed = sorted(k for k in set(saved) | set(settings)
                             if saved.get(k) != settings.get(k))
            if changed:
                def shown(values):
                    return ", ".join("the space's parameters" if k == "parameters"
                                     else f"{k}={values.get(k)}" for k in changed)
                raise UserInputError(
                    f"{project} holds a search started with {shown(saved)}, not "
                    f"{shown(settings)}: resume it with the same settings or pass another "
                    f"--directory")
        else:
            run_dir.write_json(path, settings)

    def run_trial(self, trial, *args, **kwargs):
        values = dict(trial.hyperparameters.values)
        epochs = self.epochs_per_trial
        if "tuner/epochs" in values:  # Hyperband's budget for this trial
            epochs = int(values["tuner/epochs"])
        values = {k: v for k, v in values.items() if k not in HYPERBAND_KEYS}

        last_step = [0]
        stopped = [None]

        def report(epoch, metrics) -> bool:
            if self.oracle.objective.name not in metrics:
                return False
            last_step[0] = epoch
            answer = self.oracle.update_trial(
                trial.trial_id, {k: float(v) for k, v in metrics.items()}, step=epoch)
            if getattr(answer, "status", None) == trial_module.TrialStatus.STOPPED:
                stopped[0] = epoch
                return True
            return False

        context = TrialContext(trial_id=trial.trial_id,
                               directory=self.get_trial_dir(trial.trial_id),
                               dataset=self.dataset, epochs=epochs,
                               seed=self.seed + int(trial.trial_id), report=report,
                               strategy=self.strategy)
        self._send_info(trial, self.placement())
        try:
            metrics = self.trial_fn(values, context)
        except Exception:
            self._send_info(trial, {"traceback": traceback.format_exc()})
            raise
        final = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.oracle.objective.name not in final:
            raise ValueError(f"the trial returned {sorted(final)}, not the objective "
                             f"{self.oracle.objective.name!r}")
        # The final metrics are the trial's result: reported as the step after
        # the last epoch, so they are what score_trial reads.
        if stopped[0] is not None and stopped[0] < epochs:  # told at the last epoch: done
            self._send_info(trial, {"stopped_at_epoch": stopped[0]})
        self.oracle.update_trial(trial.trial_id, {**final, FINAL_MARK: 1.0},
                                 step=last_step[0] + 1)
        return final

    def placement(self) -> dict:
        """Where this tuner's trials run: tuner id, strategy, replicas, devices."""
        import tensorflow as tf

        strategy = self.strategy or tf.distribute.get_strategy()
        try:
            devices = list(strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy: TensorFlow's own placement
            gpus = tf.config.list_logical_devices("GPU")
            devices = [(gpus or tf.config.list_logical_devices("CPU"))[0].name]
        name = type(strategy).__name__
        info = {"tuner": self.tuner_id,
                "strategy": "default" if name.startswith("_Default") else name,
                "replicas": int(strategy.num_replicas_in_sync), "devices": devices}
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            info["visible_gpus"] = os.environ["CUDA_VISIBLE_DEVICES"]
        return info

    def _send_info(self, trial, info: dict) -> None:
        self.oracle.update_trial(trial.trial_id, {INFO_MARK: 0.0, json.dumps(info): 0.0})

    def save_model(self, trial_id, model, step=0):
        pass

    def load_model(self, trial):
        return None
