"""Oracles: weighted random with fixed two-point initialisation, and KerasTuner's baselines.

:class:`WeightedRandomOracle` implements weighted random search (fixed
two-point initialisation) on top of KerasTuner's ``Oracle`` (its trial bookkeeping, retries, state saving and
distributed chief/worker mode are reused as they are):

1. The first two trials sit at 1/3 and 2/3 of the diagonal of the unit cube
   (decoded: ints rounded, choices by nearest index).
2. Every later trial takes the two best finite results at distinct points,
   b1 (better) and b2 with values v1, v2, picks anchor b1 with probability ``p1`` (minimised:
   ``v2 / (v1 + v2)``; maximised: ``v1 / (v1 + v2)``; 1/2 when both are 0),
   and samples uniformly from the box spanned by b1 and b2, widened on every
   side by half their distance and clipped to the cube, conditioned on being
   nearer to the anchor than to the other point.
3. NaN/inf results never anchor. While fewer than two finite results exist
   and trials are still running (parallel workers), the oracle reports IDLE.

Exploration (``exploration`` = e, default 0.2): with probability e a trial
is drawn uniformly from the whole cube instead, and the box around b1 and b2
reaches at least e/2 beyond them on every axis, and at least one value
beyond them on a discrete axis (ints, choices, stepped floats). Without it the search can
never leave the basin its first two points lie in, and an axis on which b1
and b2 agree never moves again; measured with ``bin/benchmark_oracles.py``
(BUILD.md), e = 0.2 beats random search on every task where e = 0 loses to it.
``exploration=0`` is the algorithm above exactly (same points for a seed).

Model-guided choice (``candidates`` = c, default 64): from the trial in which
at least ``model_start`` finite results exist (default: one more than the
axes), each trial draws c candidate points by the rule above (uniform with
probability e, else the weighted box; a third of the box points pulled 4x
and a third 16x towards their anchor, which keeps them in the box and
nearer to the anchor) and keeps the one with the largest
expected improvement under a Gaussian process (Matern 5/2 kernel with one
length scale per axis, scikit-learn) fitted to every finite result so far.
The weighted random rule still decides *where* points may come from; the
model only ranks them. Without it, the box's uniform draws cannot refine a
minimum finer than the box: at 100 trials on Branin its regret was 40x that
of KerasTuner's Bayesian oracle. ``candidates=1`` (or ``exploration=0``)
turns the model off.

The formula assumes values >= 0 (losses). Values both <= 0 use the mirrored
formula on their negations; values of mixed sign are shifted so the smaller
is 0, which makes the formula pick the better point surely.
The random stream of trial ``k`` is ``default_rng([seed, k])``, so a seed
reproduces the same sequence of points for the same results, also across a
resume (nothing but the trials themselves needs saving).
"""

from __future__ import annotations

import math
import warnings

import keras_tuner as kt
import numpy as np
from keras_tuner.engine import trial as trial_module

from autonet_tf.tuning.checks import check_oracle
from autonet_tf.tuning.space import Space

DEFAULT_EXPLORATION = 0.2
DEFAULT_CANDIDATES = 64
# Candidate j of a model-guided trial is pulled towards its anchor by
# SHRINKS[j % 3]: the box alone draws too few points close to the best one
# to refine it (Hartmann-6, 100 trials: regret 0.03 without, see BUILD.md).
SHRINKS = (1.0, 0.25, 0.0625)


def anchor_probability(v1: float, v2: float, direction: str = "min") -> float:
    """Probability of anchoring at b1 (the better point, value v1) rather than b2."""
    if direction not in ("min", "max"):
        raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
    if v1 * v2 < 0:
        # Mixed signs: shifted so the smaller value is 0, the formula gives 1.
        return 1.0
    if v1 <= 0 and v2 <= 0 and (v1 < 0 or v2 < 0):
        # Negate: minimising negative values is maximising their magnitudes.
        v1, v2 = -v1, -v2
        direction = "max" if direction == "min" else "min"
    total = v1 + v2
    if total == 0:
        return 0.5
    return (v2 / total) if direction == "min" else (v1 / total)


def sample_near(b1, b2, anchor: int, rng: np.random.Generator, min_margin=0.0,
                max_tries: int = 10000):
    """A uniform point of the widened, clipped box of b1 and b2 nearer to b_anchor.

    ``anchor`` is 0 for b1, 1 for b2. The box reaches half the distance of
    b1 and b2 beyond them on every axis, at least ``min_margin``. When
    b1 == b2 it is +-max(0.1, min_margin) around them, so the search can
    still move. ``min_margin`` is a number or one per axis.
    """
    b1 = np.asarray(b1, np.float64)
    b2 = np.asarray(b2, np.float64)
    distance = np.abs(b1 - b2)
    if not distance.any():  # nothing to be nearer to: uniform in a small box
        margin = np.maximum(0.1, min_margin)
        return rng.uniform(np.clip(b1 - margin, 0.0, 1.0), np.clip(b1 + margin, 0.0, 1.0))
    margin = np.maximum(distance / 2, min_margin)
    lo = np.clip(np.minimum(b1, b2) - margin, 0.0, 1.0)
    hi = np.clip(np.maximum(b1, b2) + margin, 0.0, 1.0)
    near, far = (b1, b2) if anchor == 0 else (b2, b1)
    for _ in range(max_tries):
        x = rng.uniform(lo, hi)
        if np.sum((x - near) ** 2) < np.sum((x - far) ** 2):
            return x
    return near.copy()


def next_point(b1, b2, v1, v2, direction: str, rng: np.random.Generator, min_margin=0.0):
    """One weighted-random step: (point, anchor index 0/1, p1)."""
    p1 = anchor_probability(v1, v2, direction)
    anchor = 0 if rng.uniform() < p1 else 1
    return sample_near(b1, b2, anchor, rng, min_margin), anchor, p1


def expected_improvement(points, values, candidates, direction: str, seed: int):
    """Expected improvement of each candidate under a GP fitted to (points, values).

    Values are standardised (maximised objectives negated, so lower is
    better); the kernel is a constant times a Matern 5/2 with one length
    scale per axis, plus a small white-noise term, fitted by maximum
    likelihood (scikit-learn, 2 restarts).
    """
    from scipy.stats import norm
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    x = np.asarray(points, np.float64)
    y = np.asarray(values, np.float64)
    if direction == "max":
        y = -y
    scale = y.std() or 1.0
    y = (y - y.mean()) / scale
    n = x.shape[1]
    kernel = (ConstantKernel(1.0, (1e-2, 1e2))
              * Matern(length_scale=np.full(n, 0.3), length_scale_bounds=(1e-2, 1e1), nu=2.5)
              + WhiteKernel(1e-4, (1e-8, 1e-1)))
    with warnings.catch_warnings():  # bounds reached on tiny histories: harmless
        warnings.simplefilter("ignore")
        gp = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=2,
                                      random_state=seed).fit(x, y)
        mean, std = gp.predict(np.asarray(candidates, np.float64), return_std=True)
    std = np.maximum(std, 1e-9)
    z = (y.min() - mean) / std
    return (y.min() - mean) * norm.cdf(z) + std * norm.pdf(z)


class WeightedRandomOracle(kt.Oracle):
    """Weighted random search as a KerasTuner oracle; see the module docstring.

    Args:
      space: the :class:`Space` (its axes define the unit cube).
      objective, max_trials, seed: as for KerasTuner oracles; the objective's
        direction decides what "best" means.
      exploration: share of uniform trials and least margin of the box (see
        the module docstring); 0 reproduces the plain algorithm.
      candidates: points drawn per trial for the model to rank (1: no model).
      model_start: finite results needed before the model ranks candidates
        (None: one more than the axes).
    """

    def __init__(self, space: Space, objective=None, max_trials=None, seed=None,
                 exploration: float = DEFAULT_EXPLORATION,
                 candidates: int = DEFAULT_CANDIDATES, model_start: int | None = None,
                 **kwargs):
        check_oracle("weighted_random", exploration, candidates)
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=space.to_hyperparameters(),
                         allow_new_entries=False, tune_new_entries=False,
                         seed=seed, **kwargs)
        self.space = space
        self.exploration = float(exploration)
        # exploration=0 is the plain algorithm: no model either.
        self.candidates = int(candidates) if self.exploration else 1
        self.model_start = (len(space.axes) + 1) if model_start is None else int(model_start)
        # The box's least margin beyond the two best points, per axis (0: plain).
        self.margin = (np.maximum(self.exploration / 2, [p.resolution for p in space.axes])
                       if self.exploration else 0.0)

    def _finite_results(self):
        """[(point, value)] of completed trials with a finite score, best first.

        A point evaluated twice (steps, ints and choices make repeats likely)
        appears once, so b1 and b2 are always two distinct points.
        """
        results = {}
        for trial in self.trials.values():
            if trial.status != trial_module.TrialStatus.COMPLETED or trial.score is None:
                continue
            score = float(trial.score)
            if math.isfinite(score):
                point = tuple(self.space.encode(trial.hyperparameters.values))
                better = (min if self.objective.direction == "min" else max)
                results[point] = better(score, results.get(point, score))
        ordered = sorted(results.items(), key=lambda r: r[1],
                         reverse=self.objective.direction == "max")
        return [(list(p), v) for p, v in ordered]

    def populate_space(self, trial_id):
        index = int(trial_id)
        n = len(self.space.axes)
        rng = np.random.default_rng([int(self.seed), index])
        if index < 2:  # the fixed initial points: 1/3 and 2/3 of the diagonal
            point = np.full(n, (index + 1) / 3.0)
        else:
            results = self._finite_results()
            if len(results) < 2 and any(t.status == trial_module.TrialStatus.RUNNING
                                        for t in self.ongoing_trials.values()):
                return {"status": trial_module.TrialStatus.IDLE}
            if self.candidates > 1 and len(results) >= max(2, self.model_start):
                point = self._model_choice(results, rng, index)
            else:
                point = self._propose(results, rng)
        return {"status": trial_module.TrialStatus.RUNNING,
                "values": self.space.decode(point)}


    def _propose(self, results, rng, shrink: float = 1.0):
        """One point by the weighted random rule (with exploration).

        ``shrink`` < 1 pulls a box point towards its anchor by that factor:
        the point stays in the box and nearer to the anchor (both regions
        are convex and hold the anchor), so the rule's support is kept and
        only the density moves closer to the anchor.
        """
        n = len(self.space.axes)
        if len(results) < 2 or (self.exploration and rng.uniform() < self.exploration):
            # Nothing can anchor yet (the initial points failed), or an exploring trial.
            return rng.uniform(0.0, 1.0, n)
        (b1, v1), (b2, v2) = results[0], results[1]
        point, anchor, _ = next_point(b1, b2, v1, v2, self.objective.direction, rng,
                                      min_margin=self.margin)
        if shrink != 1.0:
            centre = np.asarray((b1, b2)[anchor], np.float64)
            point = centre + shrink * (point - centre)
        return point

    def _model_choice(self, results, rng, index: int):
        """The candidate of largest expected improvement among ``candidates`` proposals.

        Candidates are compared where they will really be evaluated (decoded
        and encoded again: ints rounded, choices and steps snapped); points
        already evaluated are left out unless nothing else was drawn.
        """
        seen = {tuple(np.round(p, 9)) for p, _ in results}
        pool, keys = [], set()
        for j in range(self.candidates):
            shrink = SHRINKS[j % len(SHRINKS)]
            x = np.asarray(self.space.encode(self.space.decode(
                self._propose(results, rng, shrink))))
            key = tuple(np.round(x, 9))
            if key not in seen and key not in keys:
                keys.add(key)
                pool.append(x)
        if not pool:
            return self._propose(results, rng)
        gain = expected_improvement([p for p, _ in results], [v for _, v in results], pool,
                                    self.objective.direction, seed=int(self.seed) + index)
        return pool[int(np.argmax(gain))]


def create_oracle(name: str, space: Space, objective, max_trials: int, seed: int,
                  mixin: type | None = None, exploration: float | None = None,
                  candidates: int | None = None, max_epochs: int = 10,
                  **kwargs) -> kt.Oracle:
    """The oracle called ``name`` (one of :data:`~autonet_tf.tuning.checks.ORACLES`)
    over ``space``.

    ``mixin`` (e.g. the tuner's recording mixin) is put in front of the
    oracle class; ``exploration`` and ``candidates`` are the weighted random
    oracle's (None: its defaults); ``max_epochs`` is Hyperband's largest epoch budget of a trial
    (factor 3, one iteration; ``max_trials`` still caps the trials); other
    keyword arguments go to the KerasTuner oracle.
    """
    check_oracle(name, exploration, candidates)
    classes = {"weighted_random": WeightedRandomOracle,
               "random": kt.oracles.RandomSearchOracle,
               "grid": kt.oracles.GridSearchOracle,
               "bayesian": kt.oracles.BayesianOptimizationOracle,
               "hyperband": kt.oracles.HyperbandOracle}
    cls = classes[name]
    if mixin is not None:
        cls = type(f"{mixin.__name__}{cls.__name__}", (mixin, cls), {})
    common = dict(objective=objective, max_trials=max_trials, seed=seed, **kwargs)
    if name == "hyperband":
        del common["max_trials"]  # Hyperband sizes its brackets itself; capped below
        oracle = cls(hyperparameters=space.to_hyperparameters(), allow_new_entries=False,
                     tune_new_entries=False, max_epochs=max_epochs, factor=3,
                     hyperband_iterations=1, **common)
        oracle.max_trials = max_trials
        return oracle
    if name == "weighted_random":
        return cls(space, exploration=DEFAULT_EXPLORATION if exploration is None
                   else exploration,
                   candidates=DEFAULT_CANDIDATES if candidates is None else candidates,
                   **common)
    return cls(hyperparameters=space.to_hyperparameters(), allow_new_entries=False,
               tune_new_entries=False, **common)
