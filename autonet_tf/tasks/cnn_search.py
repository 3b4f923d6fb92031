"""The DARTS CNN-cell search on images (:class:`~autonet_tf.configs.SearchConfig`)."""

from __future__ import annotations

import numpy as np

from autonet_tf.data import images
from autonet_tf.tasks.search_task import SearchTask
from autonet_tf.training.search_trainer import SearchTrainer


class CNNSearchTask(SearchTask):
    """Searches a normal and a reduction cell; writes two cell pictures."""

    structural = ("layers", "init_channels", "steps", "multiplier", "stem_multiplier", "order",
                  "method", "partial_channels")

    def load_data(self):
        return images.load(self.config.data, self.config.seed)

    def building(self) -> str:
        return f"Building the supernet ({self.config.layers} cells, C={self.config.init_channels})"

    def build(self, data, strategy):
        return SearchTrainer(self.config, data, strategy)

    def describe(self, trainer) -> list[str]:
        if not self.config.progress:
            return []
        return [describe_supernet(trainer.model), describe_guard(self.config)]


def describe_guard(config) -> str:
    """One line: whether the collapse guard watches this search, and why."""
    if config.guard_on:
        return (f"Collapse guard: on (stops at more than {config.guard_max_skip} skip "
                f"connections in the normal cell or a {config.guard_eigen_growth}x eigenvalue "
                f"growth; its first epoch builds one more graph)")
    why = ("--collapse_guard=off" if config.collapse_guard == "off" else
           f"--collapse_guard=auto on {config.data.dataset}")
    return f"Collapse guard: off ({why}; --collapse_guard=on to watch the search)"


def describe_supernet(model) -> str:
    """One line: the supernet's weights and architecture weights (alphas, betas)."""
    def count(variables):
        return sum(int(np.prod(v.shape)) for v in variables)

    alphas = count([model.alphas_normal, model.alphas_reduce])
    line = (f"Supernet: {count(model.weight_variables):,} weights, {alphas} alphas")
    if model.betas:
        line += (f", {count(model.betas)} betas (PC-DARTS: 1/{model.partial_channels} of the "
                 f"channels through each edge)")
    return line
