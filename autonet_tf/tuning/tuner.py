"""Running a hyperparameter search: KerasTuner's loop, our trials, durable results.

:class:`TrialTuner` is a KerasTuner ``BaseTuner`` whose ``run_trial`` calls a
trial function (:mod:`autonet_tf.tuning.trials`). KerasTuner keeps the trial
bookkeeping and its project directory, so rerunning the same command
resumes and finished trials are not repeated; in distributed mode the same
tuner runs as chief or worker.

The oracle records what the chief sees (:class:`RecordingMixin`), in
``<directory>/<project>/``:

    trials.jsonl              one line per ended trial: id, status, hyperparameters,
                              objective, accuracy, seconds, per-epoch metrics
    best_hyperparameters.json the best trial's values and metrics
    objective.png, accuracy.png  against trial number, with best-so-far lines
    logs/hparams/             TensorBoard HParams dashboard (one run per trial)

Non-finite objectives and trials that raise are recorded as FAILED and the
search goes on.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module

from autonet_tf.training import run_dir
from autonet_tf.tuning.trials import TrialContext

TRIALS_FILE = "trials.jsonl"
FINAL_MARK = "__final__"  # marks the report of a trial's final metrics
BEST_FILE = "best_hyperparameters.json"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class RecordingMixin:
    """Chief-side recording of every trial's epochs and outcome (see the module docstring)."""

    accuracy_metric = "val_accuracy"
    verbose_records = True  # print each epoch report and each ended trial
    summaries = True  # best JSON, plots, HParams after every trial (off: call write_summaries)

    def _records_path(self):
        return os.path.join(self._project_dir, TRIALS_FILE)

    def read_records(self) -> list[dict]:
        return read_records(self._project_dir)

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        # A plain dict: over gRPC this is a protobuf map, whose missing keys
        # read as 0.0 instead of raising.
        final = FINAL_MARK in metrics
        metrics = {k: float(v) for k, v in metrics.items() if k != FINAL_MARK}
        result = super().update_trial(trial_id, metrics, step=step)
        if not final and self.verbose_records:
            shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                             if isinstance(v, (int, float)))
            print(f"[trial {trial_id}] epoch {step}: {shown}", flush=True)
        return result

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
        record = {
            "trial_id": trial.trial_id,
            "status": trial.status,
            "hyperparameters": dict(trial.hyperparameters.values),
            "objective": trial.score if _finite(trial.score) else None,
            "accuracy": metrics.get(self.accuracy_metric),
            "seconds": round(time.time() - started.get(trial.trial_id, time.time()), 3),
            "metrics": metrics,
            "epochs": epochs,
            "message": (trial.message or "").strip().splitlines()[-1:] or None,
        }
        records = [r for r in self.read_records() if r["trial_id"] != trial.trial_id]
        records.append(record)
        run_dir.write_text(self._records_path(),
                           "".join(json.dumps(r) + "\n" for r in records))
        status = "FAILED" if record["objective"] is None else (
            f"{self.objective.name}={record['objective']:.5g}")
        if self.verbose_records:
            print(f"[trial {trial.trial_id}] {status} in {record['seconds']:.1f} s "
                  f"{record['hyperparameters']}", flush=True)
        if self.summaries:
            write_summaries(self, records)

    @kt.synchronized
    def create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.RUNNING:
            if not hasattr(self, "_started"):
                self._started = {}
            self._started.setdefault(trial.trial_id, time.time())
        return trial


def read_records(project_dir: str) -> list[dict]:
    """The ended trials recorded in ``project_dir/trials.jsonl`` (empty if none)."""
    path = os.path.join(project_dir, TRIALS_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def best_record(records: list[dict], direction: str) -> dict | None:
    """The finished trial with the best objective (None when no trial finished)."""
    done = [r for r in records if r["objective"] is not None]
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
    """objective.png and accuracy.png: values per trial and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(records, key=lambda r: int(r["trial_id"]))
    x = [int(r["trial_id"]) + 1 for r in ordered]
    for key, name, best_dir in (("objective", objective, direction),
                                ("accuracy", "accuracy", "max")):
        values = [r.get(key) for r in ordered]
        fig, ax = plt.subplots(figsize=(6, 4))
        points = [(a, v) for a, v in zip(x, values) if v is not None]
        if points:
            ax.plot(*zip(*points), "o", label=name)
        best = _best_so_far(values, best_dir)
        steps = [(a, b) for a, b in zip(x, best) if b is not None]
        if steps:
            ax.step(*zip(*steps), where="post", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(name)
        if points:
            ax.legend()
        fig.tight_layout()
        path = os.path.join(directory, f"{key}.png")
        tmp = os.path.join(directory, f".tmp_{key}.png")
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, path)


def log_hparams(records: list[dict], objective: str, logdir: str) -> None:
    """TensorBoard HParams dashboard: one run per finished trial (written once)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams

    for r in records:
        run = os.path.join(logdir, f"trial_{r['trial_id']}")
        if os.path.exists(run) or r["objective"] is None:
            continue
        values = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
                  for k, v in r["hyperparameters"].items()}
        with tf.summary.create_file_writer(run).as_default():
            hparams.hparams(values, trial_id=r["trial_id"])
            tf.summary.scalar(objective, r["objective"], step=0)
            if r.get("accuracy") is not None:
                tf.summary.scalar("accuracy", r["accuracy"], step=0)


class TrialTuner(kt.engine.base_tuner.BaseTuner):
    """Runs ``trial_fn(values, context)`` for each trial the oracle hands out."""

    def __init__(self, oracle, trial_fn, dataset=None, epochs_per_trial=5, seed=0, **kwargs):
        super().__init__(oracle, **kwargs)
        # We report metrics to the oracle ourselves (per epoch, then final).
        warnings.filterwarnings("ignore", message="The use case of calling",
                                category=DeprecationWarning)
        self.trial_fn = trial_fn
        self.dataset = dataset
        self.epochs_per_trial = epochs_per_trial
        self.seed = seed

    def run_trial(self, trial, *args, **kwargs):
        values = dict(trial.hyperparameters.values)

        last_step = [0]

        def report(epoch, metrics):
            if self.oracle.objective.name in metrics:
                last_step[0] = epoch
                self.oracle.update_trial(trial.trial_id,
                                         {k: float(v) for k, v in metrics.items()}, step=epoch)

        context = TrialContext(trial_id=trial.trial_id,
                               directory=self.get_trial_dir(trial.trial_id),
                               dataset=self.dataset, epochs=self.epochs_per_trial,
                               seed=self.seed + int(trial.trial_id), report=report)
        metrics = self.trial_fn(values, context)
        final = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.oracle.objective.name not in final:
            raise ValueError(f"the trial returned {sorted(final)}, not the objective "
                             f"{self.oracle.objective.name!r}")
        # The final metrics are the trial's result: reported as the step after
        # the last epoch, so they are what score_trial reads.
        self.oracle.update_trial(trial.trial_id, {**final, FINAL_MARK: 1.0},
                                 step=last_step[0] + 1)
        return final

    def save_model(self, trial_id, model, step=0):
        pass

    def load_model(self, trial):
        return None
