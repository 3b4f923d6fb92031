"""Training a recurrent genotype's language model (:class:`~autonet_tf.configs.RNNTrainConfig`)."""

from __future__ import annotations

import dataclasses

from autonet_tf import lm_export
from autonet_tf.data import text
from autonet_tf.search_space.rnn_genotypes import RecurrentGenotype, load_recurrent_genotype
from autonet_tf.tasks.train_task import TrainTask, with_export
from autonet_tf.training.rnn_trainer import RNNTrainer


@dataclasses.dataclass
class RNNTrainResult:
    model_dir: str
    genotype: RecurrentGenotype
    parameters: int
    metrics: dict  # valid/test loss and perplexity of the kept (best) weights
    export_dir: str | None
    trainer: RNNTrainer
    history: list[dict] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        """The score line (and where the export went), as the programs print it."""
        return with_export(f"Test perplexity: {self.metrics['test_perplexity']:.2f} (valid "
                           f"{self.metrics['valid_perplexity']:.2f}), {self.parameters:,} "
                           f"parameters", self.export_dir)


class RNNTrainTask(TrainTask):
    """The tied-weight language model of a recurrent cell; exports a sequence scorer."""

    structural = ("genotype_spec", "emsize", "nhid", "batch_size")

    def load_genotype(self, spec):
        return load_recurrent_genotype(spec)

    def load_data(self):
        return text.load(self.config.data.dataset, self.config.data.data_dir)

    def build(self, data, strategy):
        return RNNTrainer(self.config, self.genotype, data, strategy)

    def describe(self, trainer) -> list[str]:
        return [f"Language model: vocabulary {trainer.corpus.vocab_size:,}, emsize = nhid = "
                f"{self.config.nhid}, {trainer.parameters:,} parameters (tied weights)"]

    def summary(self, trainer, data, metrics) -> dict:
        return {**metrics, "parameters": trainer.parameters, "epochs": self.config.epochs,
                "vocab_size": data.vocab_size, "averaged_sgd": trainer.averaging,
                "genotype": self.genotype.to_dict()}

    def export(self, trainer, data, metrics, export_dir: str) -> None:
        lm_export.export_language_model(
            trainer.export_model(), export_dir, vocab=data.vocab,
            metadata={"genotype": self.genotype.to_dict(), "dataset": self.config.data.dataset,
                      "parameters": trainer.parameters, "emsize": self.config.emsize,
                      "bptt": self.config.bptt, **metrics})

    def result(self, trainer, metrics, export_dir) -> RNNTrainResult:
        return RNNTrainResult(self.config.model_dir, self.genotype, trainer.parameters,
                              metrics, export_dir, trainer, trainer.loop.history)
