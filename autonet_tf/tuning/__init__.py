"""Hyperparameter and random NAS search (weighted random, random, grid, Bayesian)."""

__all__ = ["TrialContext", "TuneResult", "Space", "build_tuner", "keras_trial", "load_space",
           "parse_space", "tune"]

from autonet_tf.tuning.api import TuneResult, build_tuner, tune  # noqa: F401
from autonet_tf.tuning.space import Space, load_space, parse_space  # noqa: F401
from autonet_tf.tuning.trials import TrialContext, keras_trial  # noqa: F401
