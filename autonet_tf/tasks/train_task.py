"""What every training run writes (genotype, result.json, the export) and returns."""

from __future__ import annotations

import os

from autonet_tf import progress
from autonet_tf.io import run_dir
from autonet_tf.tasks.base import Task, keep_export


def with_export(line: str, export_dir: str | None) -> str:
    return f"{line}\nExported: {export_dir}" if export_dir else line


class TrainTask(Task):
    """Trains ``genotype`` from scratch, scores it, exports it.

    Args:
      config: the training config; ``config.genotype`` names the genotype.
      data: the dataset or corpus; None loads ``config.data``.
      genotype: overrides ``config.genotype`` (a search handing its result on).
    """

    kind = "training"

    def __init__(self, config, data=None, genotype=None):
        super().__init__(config, data)
        self.genotype = genotype

    def load_genotype(self, spec):
        raise NotImplementedError

    def validate(self) -> None:
        super().validate()
        if self.genotype is None:
            self.genotype = self.load_genotype(self.config.genotype)

    def record(self) -> dict:
        return {**self.config.to_dict(), "genotype_spec": self.genotype.to_dict()}

    def start_files(self) -> dict:
        return {"genotype.json": self.genotype.to_dict()}

    def execute(self, trainer):
        return trainer.train()

    def summary(self, trainer, data, metrics) -> dict:
        """``result.json``'s content."""
        raise NotImplementedError

    def export(self, trainer, data, metrics, export_dir: str) -> None:
        raise NotImplementedError

    def exporting(self) -> str:
        return "Exporting SavedModel"

    def result(self, trainer, metrics, export_dir):
        raise NotImplementedError

    def finish(self, trainer, data, metrics, chief: bool):
        export_dir = None
        if chief:
            d = self.config.model_dir
            run_dir.write_json(os.path.join(d, "result.json"),
                               self.summary(trainer, data, metrics))
            export_dir = os.path.join(d, "export") if self.config.export else None
            if export_dir and not keep_export(trainer, export_dir):
                with progress.note(f"{self.exporting()} to {export_dir}"):
                    self.export(trainer, data, metrics, export_dir)
        return self.result(trainer, metrics, export_dir)
