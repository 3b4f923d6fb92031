"""Training a CNN genotype's image classifier (:class:`~autonet_tf.configs.TrainConfig`)."""

from __future__ import annotations

import dataclasses

from autonet_tf import export
from autonet_tf.data import images
from autonet_tf.search_space.genotypes import Genotype, load_genotype
from autonet_tf.tasks.train_task import TrainTask, with_export
from autonet_tf.training.network_trainer import NetworkTrainer


@dataclasses.dataclass
class TrainResult:
    model_dir: str
    genotype: Genotype
    parameters: int
    test_loss: float
    test_accuracy: float
    export_dir: str | None
    trainer: NetworkTrainer
    history: list[dict] = dataclasses.field(default_factory=list)  # one record per epoch

    def summary(self) -> str:
        """The score line (and where the export went), as the programs print it."""
        return with_export(f"Test accuracy: {self.test_accuracy:.4f} (loss "
                           f"{self.test_loss:.4f}), {self.parameters:,} parameters",
                           self.export_dir)


class CNNTrainTask(TrainTask):
    """The CIFAR or ImageNet network of a cell genotype; exports SavedModel (and TFLite)."""

    structural = ("genotype_spec", "network", "layers", "init_channels", "auxiliary")

    def load_genotype(self, spec):
        return load_genotype(spec)

    def load_data(self):
        return images.load(self.config.data, self.config.seed)

    def building(self) -> str:
        return f"Building the network ({self.config.layers} cells, C={self.config.init_channels})"

    def build(self, data, strategy):
        return NetworkTrainer(self.config, self.genotype, data, strategy)

    def describe(self, trainer) -> list[str]:
        c = self.config
        return [f"Network: {trainer.kind}, {c.layers} cells, C={c.init_channels}, "
                f"{trainer.parameters:,} parameters (without the auxiliary head)"]

    def summary(self, trainer, data, metrics) -> dict:
        return {"test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"],
                "parameters": trainer.parameters, "network": trainer.kind,
                "epochs": self.config.epochs, "genotype": self.genotype.to_dict()}

    def exporting(self) -> str:
        return f"Exporting SavedModel{' and TFLite' if self.config.tflite else ''}"

    def export(self, trainer, data, metrics, export_dir: str) -> None:
        c = self.config
        export.export_classifier(
            trainer.export_model(), export_dir, input_shape=data.input_shape,
            mean=data.mean, std=data.std, class_names=data.class_names, tflite=c.tflite,
            metadata={"genotype": self.genotype.to_dict(), "network": trainer.kind,
                      "layers": c.layers, "init_channels": c.init_channels,
                      "parameters": trainer.parameters, "dataset": c.data.dataset,
                      # digits and image folders are split by this seed
                      "split_seed": c.seed, "test_fraction": c.data.test_fraction,
                      "test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"],
                      "epochs": c.epochs})

    def result(self, trainer, metrics, export_dir) -> TrainResult:
        return TrainResult(self.config.model_dir, self.genotype, trainer.parameters,
                           metrics["loss"], metrics["accuracy"], export_dir, trainer,
                           trainer.loop.history)
