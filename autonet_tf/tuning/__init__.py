"""Hyperparameter and random NAS search (weighted random, random, grid, Bayesian).

The names below load their modules on first use: ``autonet_tf.tuning.space``
and ``autonet_tf.tuning.checks`` (what ``bin/tune.py`` checks before it
starts TensorFlow) import neither TensorFlow nor KerasTuner.
"""

import importlib

__all__ = ["TrialContext", "TuneResult", "Space", "build_tuner", "keras_trial", "load_space",
           "parse_space", "tune"]

_MODULE_OF = {"TuneResult": "api", "build_tuner": "api", "tune": "api",
              "Space": "space", "load_space": "space", "parse_space": "space",
              "TrialContext": "trials", "keras_trial": "trials"}


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
