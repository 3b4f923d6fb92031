"""The settings of a search that can be checked without TensorFlow.

``bin/tune.py`` runs :func:`check_settings` before it starts TensorFlow (a
bad flag costs a fraction of a second, not TensorFlow's start-up), and
:func:`autonet_tf.tuning.build_tuner` runs the same checks for the Python
API. What needs TensorFlow (reading a trial's dataset) is checked later, in
``build_tuner``, still before the first trial.

This module imports neither TensorFlow nor KerasTuner.
"""

from __future__ import annotations

import dataclasses

from autonet_tf.errors import UserInputError

#: the oracles ``--oracle`` accepts
ORACLES = ("weighted_random", "random", "grid", "bayesian", "hyperband")

#: the built-in trials (``--trial`` or ``trial:`` of a space file)
TRIAL_NAMES = ("mlp", "simple_cnn", "darts_search", "train_genotype")

#: metrics every built-in trial returns (any of them can be the objective)
METRICS = ("val_loss", "val_accuracy", "loss", "accuracy")

#: the configuration class whose fields the parameters of a built-in trial set
CONFIG_OF_TRIAL = {"darts_search": "SearchConfig", "train_genotype": "TrainConfig"}


def objective_of(space, name: str | None = None) -> tuple[str, str]:
    """(name, 'min' or 'max'): --objective NAME[:min|max] > the space's objective >
    val_loss (min)."""
    direction = None
    if name:
        name, _, direction = name.partition(":")
        direction = direction or None
        if direction not in (None, "min", "max"):
            raise UserInputError(f"--objective={name}:{direction} is invalid: the direction "
                                 f"must be min or max")
    declared = space.objective or {}
    name = name or declared.get("name") or "val_loss"
    if direction is None:
        if declared.get("name") == name and declared.get("direction"):
            direction = declared["direction"]
        elif "loss" in name or "error" in name:
            direction = "min"
        elif "acc" in name or "auc" in name:
            direction = "max"
        else:
            raise UserInputError(f"--objective={name!r}: say whether to minimise or maximise "
                                 f"it, e.g. --objective={name}:min")
    return name, direction


def check_trial_name(name: str) -> None:
    if name not in TRIAL_NAMES:
        raise UserInputError(f"--trial={name!r} is not known; expected one of "
                             f"{', '.join(TRIAL_NAMES)}")


def config_fields(cls, values: dict, skip=()) -> dict:
    """The entries of ``values`` that are fields of dataclass ``cls``; raises
    UserInputError for a name that is none of its fields (nor in ``skip``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names - set(skip))
    if unknown:
        raise UserInputError(f"parameters {unknown} of the space are not settings of "
                             f"{cls.__name__} (expected names such as "
                             f"{', '.join(sorted(names)[:6])}, ...)")
    return {k: v for k, v in values.items() if k in names}


def check_oracle(name: str, exploration: float | None = None,
                 candidates: int | None = None) -> None:
    """The oracle's name and the weighted random oracle's own settings."""
    for setting, value in (("exploration", exploration), ("candidates", candidates)):
        if value is not None and name != "weighted_random":
            raise UserInputError(f"--{setting} is a setting of the weighted_random oracle, "
                                 f"not of {name!r}")
    if name not in ORACLES:
        raise UserInputError(f"--oracle={name!r} is not known; expected one of "
                             f"{', '.join(ORACLES)}")
    if exploration is not None and not 0.0 <= exploration <= 1.0:
        raise UserInputError(f"exploration={exploration} is invalid: expected a share "
                             f"between 0 and 1")
    if candidates is not None and (int(candidates) != candidates or candidates < 1):
        raise UserInputError(f"candidates={candidates} is invalid: expected an integer "
                             f">= 1 (1: no model)")


def check_settings(trial, space, *, oracle: str, objective: str | None = None,
                   exploration: float | None = None,
                   candidates: int | None = None) -> tuple[str, str]:
    """Every check of a search's settings that needs no TensorFlow; returns the
    objective as (name, direction). ``trial``: a built-in trial's name or a function."""
    name, direction = objective_of(space, objective)
    if isinstance(trial, str):  # a built-in trial: its metrics and parameters are known
        check_trial_name(trial)
        if name not in METRICS:
            raise UserInputError(f"--objective={name!r} is not a metric of the "
                                 f"{trial!r} trial; expected one of {', '.join(METRICS)}")
        if trial in CONFIG_OF_TRIAL:
            from autonet_tf import configs

            config_fields(getattr(configs, CONFIG_OF_TRIAL[trial]),
                          dict.fromkeys(p.name for p in space.params))
    check_oracle(oracle, exploration, candidates)
    return name, direction
