"""Watching a DARTS search for collapse, and stopping it before the cell degrades.

On new data and in longer searches DARTS drifts to parameter-free ops (skip
connections, pooling): the supernet's validation loss keeps falling while
the derived cell gets worse. Two signals announce it, and both are
recorded for every search epoch:

* ``normal_skip_connects`` / ``normal_parameter_free``: skip connections and
  parameter-free ops (skips and pooling) in the normal cell derived from the
  alphas (the plain derivation, before any ``max_skip`` cap);
* ``hessian_eigenvalue``: the largest eigenvalue of the Hessian of the
  validation loss with respect to the alphas, estimated by Lanczos (power)
  iteration on Hessian-vector products (:func:`largest_eigenvalue`). It grows sharply
  when the search settles into a sharp minimum, which RobustDARTS (Zela et
  al. 2020) found to precede the collapse.

:class:`CollapseGuard` turns them into one decision per epoch, in the spirit
of DARTS+ (Liang et al. 2019: stop when the normal cell holds too many skip
connections) and RobustDARTS' early stopping (stop when the eigenvalue
grows fast). When it acts, the search stops and keeps the genotype of the
last epoch before the signal.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

#: ops without weights in the CNN search space
PARAMETER_FREE = ("skip_connect", "max_pool_3x3", "avg_pool_3x3")


def cell_counts(genotype) -> dict:
    """History fields: skip connections and parameter-free ops of the normal cell."""
    ops = [op for op, _ in genotype.normal]
    return {"normal_skip_connects": sum(op == "skip_connect" for op in ops),
            "normal_parameter_free": sum(op in PARAMETER_FREE for op in ops)}


def largest_eigenvalue(hvp: Callable[[np.ndarray], np.ndarray], size: int,
                       iterations: int = 10, seed: int = 0) -> float:
    """The largest eigenvalue of a symmetric operator from ``iterations`` products.

    Lanczos iteration (power iteration that keeps every direction it has
    seen, fully re-orthogonalised): ``hvp(v)`` returns the Hessian times
    ``v`` (flat arrays of ``size`` values); the result is the largest
    eigenvalue of the projected tridiagonal matrix, which converges to the
    top of the spectrum much faster than plain power iteration and is not
    pulled towards large negative eigenvalues (a search far from a minimum
    has those). Starts from a seeded random direction.
    """
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(size)
    basis = [q / np.linalg.norm(q)]
    alphas, betas = [], []
    for k in range(min(iterations, size)):
        w = np.asarray(hvp(basis[-1]), np.float64)
        if not np.all(np.isfinite(w)):
            return float("nan")
        alphas.append(float(basis[-1] @ w))
        for b in basis:  # full re-orthogonalisation
            w -= (b @ w) * b
        beta = float(np.linalg.norm(w))
        if beta < 1e-10 or k == iterations - 1:
            break
        betas.append(beta)
        basis.append(w / beta)
    t = np.diag(alphas) + np.diag(betas[:len(alphas) - 1], 1) + np.diag(betas[:len(alphas) - 1], -1)
    return float(np.linalg.eigvalsh(t)[-1])


@dataclasses.dataclass
class Decision:
    """The guard's verdict on one epoch: ``stop`` with the epoch whose genotype is kept."""

    stop: bool = False
    reason: str = ""
    keep_epoch: int | None = None  # 1-based; None: the current genotype with max_skip applied


class CollapseGuard:
    """Decides after each search epoch whether the search is collapsing.

    Args:
      max_skip: act when the derived normal cell holds more skip connections
        than this (DARTS+ stops at 2 or more; the default 2 acts at 3).
      eigen_growth: act when the mean eigenvalue of the last ``window``
        epochs exceeds ``eigen_growth`` times the mean of the ``window``
        epochs before them (RobustDARTS: 1 / 0.75 = 1.33).
      window: epochs per eigenvalue mean.
    """

    def __init__(self, max_skip: int = 2, eigen_growth: float = 1.3, window: int = 2):
        self.max_skip = max_skip
        self.eigen_growth = eigen_growth
        self.window = window

    def check(self, epoch: int, record: dict, history: Sequence[dict]) -> Decision:
        """``record``: this epoch's fields; ``history``: the earlier epochs' records.

        Only epochs that moved the alphas (no ``arch_warmup``) count.
        """
        earlier = [r for r in history if r["epoch"] < epoch and not r.get("arch_warmup")
                   and "hessian_eigenvalue" in r]
        skips = record["normal_skip_connects"]
        if skips > self.max_skip:
            healthy = [r for r in earlier if r["normal_skip_connects"] <= self.max_skip]
            keep = healthy[-1]["epoch"] if healthy else None
            return Decision(True, f"{skips} skip connections in the normal cell "
                                  f"(cap {self.max_skip})", keep)
        values = [r["hessian_eigenvalue"] for r in earlier] + [record["hessian_eigenvalue"]]
        w = self.window
        if len(values) >= 2 * w:
            recent, before = np.mean(values[-w:]), np.mean(values[-2 * w:-w])
            if before > 0 and recent > self.eigen_growth * before:
                keep = earlier[-w]["epoch"]  # the last epoch before the growth window
                return Decision(True, f"the Hessian eigenvalue grew {recent / before:.2f}x "
                                      f"over {w} epochs ({before:.4g} -> {recent:.4g}, "
                                      f"limit {self.eigen_growth}x)", keep)
        return Decision()
