"""What every search writes when it ends, and the result it returns."""

from __future__ import annotations

import dataclasses
import os

from autonet_tf import progress
from autonet_tf.io import run_dir
from autonet_tf.search_space.genotypes import Genotype
from autonet_tf.search_space.rnn_genotypes import RecurrentGenotype
from autonet_tf.tasks.base import Task
from autonet_tf.viz.cells import plot_genotype


@dataclasses.dataclass
class SearchResult:
    genotype: Genotype | RecurrentGenotype
    model_dir: str
    pictures: list[str]
    warnings: list[str]
    history: list[dict] = dataclasses.field(default_factory=list)  # one record per epoch


class SearchTask(Task):
    """A search: runs ``trainer.search()``, writes genotype, alphas and pictures."""

    kind = "search"

    def execute(self, trainer):
        return trainer.search()

    def finish(self, trainer, data, genotype, chief: bool) -> SearchResult:
        pictures, warnings = [], []
        if chief:
            d = self.config.model_dir
            run_dir.write_json(os.path.join(d, "genotype.json"), genotype.to_dict())
            run_dir.write_json(os.path.join(d, "alphas.json"), trainer.softmax_alphas())
            pictures, warnings = plot_genotype(genotype, os.path.join(d, "genotype"))
            for warning in warnings:
                progress.say(f"warning: {warning}")
        return SearchResult(genotype, self.config.model_dir, pictures, warnings,
                            trainer.loop.history)
