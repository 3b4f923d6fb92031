"""The Python API of hyperparameter search: :func:`tune`.

    from autonet_tf.tuning import tune, load_space, keras_trial

    def build(values):                       # your model
        model = keras.Sequential([...])
        model.compile(optimizer=keras.optimizers.Adam(values["learning_rate"]),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    result = tune(keras_trial(build, x, y), load_space("space.yaml"),
                  oracle="weighted_random", max_trials=20, directory="runs/mine")
    print(result.best_hyperparameters, result.best_objective)

A trial may also be any ``fn(values, context) -> {"val_loss": ..., ...}``
(see :mod:`autonet_tf.tuning.trials`), or the name of a built-in trial.
"""

from __future__ import annotations

import dataclasses
import os

import keras_tuner as kt

from autonet_tf.tuning.checks import check_settings, objective_of
from autonet_tf.tuning.oracles import create_oracle
from autonet_tf.tuning.space import Space
from autonet_tf.tuning.trials import check_inputs, get_trial
from autonet_tf.tuning.tuner import ACCURACY, BEST_FILE, RecordingMixin, TrialTuner

PROJECT = "search"


@dataclasses.dataclass
class TuneResult:
    directory: str  # <directory>/<project>: trials.jsonl, best_hyperparameters.json, plots
    records: list[dict]
    best_hyperparameters: dict | None
    best_objective: float | None
    #: why the search stopped before its budget (two trials failed the same way), else None
    stop_reason: str | None = None


def resolve_objective(space: Space, name: str | None = None) -> kt.Objective:
    """--objective NAME[:min|max] > the space's objective > val_loss (min)."""
    return kt.Objective(*objective_of(space, name))


def build_tuner(trial, space: Space, *, oracle: str = "weighted_random", max_trials: int = 10,
                objective: str | None = None, directory: str = "runs/tune", seed: int = 0,
                dataset: str | None = None, epochs_per_trial: int = 5,
                exploration: float | None = None, candidates: int | None = None,
                strategy=None,
                median_stopping: bool = False, quiet: bool = False) -> TrialTuner:
    """The KerasTuner tuner (chief, worker or single process, from the environment).

    ``strategy``: the tf.distribute strategy every trial of this process runs
    under (one object for all trials: two MirroredStrategy objects in one
    process mix up their collectives); None: TensorFlow's default.
    ``median_stopping``: stop trials that fall behind the median of earlier
    trials at the same epoch (see :mod:`autonet_tf.tuning.tuner`).
    """
    kt_objective = kt.Objective(*check_settings(trial, space, oracle=oracle, objective=objective,
                                                exploration=exploration, candidates=candidates))
    trial_fn = get_trial(trial) if isinstance(trial, str) else trial
    if isinstance(trial, str):  # a built-in trial: what it reads is known
        check_inputs(trial, dataset)
    oracle_obj = create_oracle(oracle, space, kt_objective, max_trials, seed,
                               mixin=RecordingMixin, exploration=exploration,
                               candidates=candidates,
                               max_epochs=epochs_per_trial,
                               max_consecutive_failed_trials=max_trials + 1)
    oracle_obj.verbose = 0
    oracle_obj.median_stopping = bool(median_stopping)
    if quiet:  # no per-trial printing or plotting (benchmarks); records are still kept
        oracle_obj.verbose_records = oracle_obj.summaries = False
    settings = {"oracle": oracle, "objective": [kt_objective.name, kt_objective.direction],
                "parameters": [dataclasses.asdict(p) for p in space.params]}
    if oracle == "weighted_random":
        settings["exploration"] = oracle_obj.exploration
        settings["candidates"] = oracle_obj.candidates
    return TrialTuner(oracle_obj, trial_fn, dataset=dataset, epochs_per_trial=epochs_per_trial,
                      seed=seed, settings=settings, strategy=strategy, directory=directory,
                      project_name=PROJECT)


def tune(trial, space: Space, **kwargs) -> TuneResult:
    """Runs (or resumes) a search; see the module docstring. Keyword arguments: build_tuner's."""
    tuner = build_tuner(trial, space, **kwargs)
    tuner.search()
    return result_of(tuner)


def result_of(tuner) -> TuneResult:
    records = tuner.oracle.read_records()
    best_path = os.path.join(tuner.project_dir, BEST_FILE)
    best = best_value = None
    from autonet_tf.io import run_dir

    if run_dir.exists(best_path):
        data = run_dir.read_json(best_path)
        best, best_value = data["hyperparameters"], data["objective"]["value"]
    return TuneResult(tuner.project_dir, records, best, best_value,
                      getattr(tuner.oracle, "stop_reason", None))


def summary_table(records: list[dict], objective: str) -> str:
    """A text table of every trial, best objective first."""
    done = sorted(records, key=lambda r: int(r["trial_id"]))
    names = sorted({k for r in done for k in r["hyperparameters"]})
    # Epochs a trial trained, where not all the same: Hyperband budgets, early stops.
    budgets = any("hyperband" in r or "stopped_at_epoch" in r for r in done)
    header = ["trial", "status", objective, ACCURACY, "seconds"] + (
        ["epochs"] if budgets else []) + names
    rows = [header]
    for r in done:
        epochs = r.get("stopped_at_epoch") or r.get("hyperband", {}).get("epochs", "-")
        rows.append([r["trial_id"], r["status"],
                     "-" if r["objective"] is None else f"{r['objective']:.5g}",
                     "-" if r.get(ACCURACY) is None else f"{r[ACCURACY]:.4f}",
                     f"{r['seconds']:.1f}"] + ([str(epochs)] if budgets else [])
                    + [_short(r["hyperparameters"].get(n)) for n in names])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
