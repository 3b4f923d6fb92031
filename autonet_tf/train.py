"""Train a discovered network from scratch, evaluate it, export it.

``run_train`` trains a CNN cell's image classifier, ``run_rnn_train`` a
recurrent cell's language model.

Run directory (``config.model_dir``)::

    config.json          the full validated config (and the genotype used)
    genotype.json        the genotype trained
    checkpoints/         tf.train.CheckpointManager (resume after a kill)
    logs/train, logs/val TensorBoard (val = the test split, as in the reference)
    history.jsonl        one JSON line per epoch
    result.json          final test loss/accuracy and the parameter count
    export/              SavedModel, metadata.json, model.tflite (see autonet_tf.export)
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from autonet_tf import export, lm_export, progress
from autonet_tf.configs import RNNTrainConfig, TrainConfig
from autonet_tf.data import images, text
from autonet_tf.distribute.strategy import create_strategy, is_chief
from autonet_tf.search_space.genotypes import Genotype, load_genotype
from autonet_tf.search_space.rnn_genotypes import RecurrentGenotype, load_recurrent_genotype
from autonet_tf.training import run_dir
from autonet_tf.training.network_trainer import NetworkTrainer, check_resumable
from autonet_tf.training.rnn_trainer import RNNTrainer
from autonet_tf.training.rnn_trainer import check_resumable as rnn_check_resumable


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
        return _with_export(f"Test accuracy: {self.test_accuracy:.4f} (loss "
                            f"{self.test_loss:.4f}), {self.parameters:,} parameters",
                            self.export_dir)


def _with_export(line: str, export_dir: str | None) -> str:
    return f"{line}\nExported: {export_dir}" if export_dir else line


def run_train(config: TrainConfig, strategy: tf.distribute.Strategy | None = None,
              dataset: images.ImageDataset | None = None,
              genotype: Genotype | None = None) -> TrainResult:
    """Validates ``config``, trains (or resumes), evaluates and exports.

    ``genotype`` overrides ``config.genotype`` (used when a search hands its
    result straight to training).
    """
    config.validate()
    if genotype is None:
        genotype = load_genotype(config.genotype)
    run_dir.check_writable_parent(config.model_dir)
    check_resumable(config.model_dir, config, genotype)
    if dataset is None:
        dataset = images.load(config.data, config.seed)
    if strategy is None:
        strategy = create_strategy(config.strategy, config.num_devices, config.tpu)
    with progress.note(f"Building the network ({config.layers} cells, "
                       f"C={config.init_channels})",
                       enabled=config.progress and is_chief(strategy)):
        trainer = NetworkTrainer(config, genotype, dataset, strategy)  # validates; writes nothing
    d = run_dir.prepare(config.model_dir)
    if trainer.chief:
        run_dir.write_json(os.path.join(d, "config.json"),
                           {**config.to_dict(), "genotype_spec": genotype.to_dict()})
        run_dir.write_json(os.path.join(d, "genotype.json"), genotype.to_dict())
        print(f"Network: {trainer.kind}, {config.layers} cells, C={config.init_channels}, "
              f"{trainer.parameters:,} parameters (without the auxiliary head)", flush=True)
    metrics = trainer.train()
    export_dir = None
    if trainer.chief:
        summary = {"test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"],
                   "parameters": trainer.parameters, "network": trainer.kind,
                   "epochs": config.epochs, "genotype": genotype.to_dict()}
        run_dir.write_json(os.path.join(d, "result.json"), summary)
        export_dir = os.path.join(d, "export") if config.export else None
        if export_dir and not _keep_export(trainer, export_dir):
            with progress.note(f"Exporting SavedModel{' and TFLite' if config.tflite else ''} "
                               f"to {export_dir}"):
                export.export_classifier(
                    trainer.export_model(), export_dir, input_shape=dataset.input_shape,
                    mean=dataset.mean, std=dataset.std, class_names=dataset.class_names,
                    tflite=config.tflite,
                    metadata={"genotype": genotype.to_dict(), "network": trainer.kind,
                              "layers": config.layers, "init_channels": config.init_channels,
                              "parameters": trainer.parameters, "dataset": config.data.dataset,
                              # digits and image folders are split by this seed
                              "split_seed": config.seed,
                              "test_fraction": config.data.test_fraction,
                              "test_accuracy": metrics["accuracy"],
                              "test_loss": metrics["loss"], "epochs": config.epochs})
    return TrainResult(config.model_dir, genotype, trainer.parameters, metrics["loss"],
                       metrics["accuracy"], export_dir, trainer, getattr(trainer, "history", []))


def _keep_export(trainer, export_dir: str) -> bool:
    """A rerun of a finished run keeps the export it already wrote."""
    if getattr(trainer, "already_complete", False) and run_dir.isdir(export_dir):
        print(f"Export kept: {export_dir} (delete it to export again)", flush=True)
        return True
    return False


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
        return _with_export(f"Test perplexity: {self.metrics['test_perplexity']:.2f} (valid "
                            f"{self.metrics['valid_perplexity']:.2f}), {self.parameters:,} "
                            f"parameters", self.export_dir)


def run_rnn_train(config: RNNTrainConfig, strategy: tf.distribute.Strategy | None = None,
                  corpus: text.Corpus | None = None,
                  genotype: RecurrentGenotype | None = None) -> RNNTrainResult:
    """Trains a recurrent cell's language model (or resumes), scores it, exports it.

    Run directory as for CNN training; ``result.json`` holds valid and test
    perplexity, and ``export/`` the SavedModel with ``vocab.txt``
    (:mod:`autonet_tf.lm_export`).
    """
    config.validate()
    if genotype is None:
        genotype = load_recurrent_genotype(config.genotype)
    run_dir.check_writable_parent(config.model_dir)
    rnn_check_resumable(config.model_dir, config, genotype)
    if corpus is None:
        corpus = text.load(config.data.dataset, config.data.data_dir)
    if strategy is None:
        strategy = create_strategy(config.strategy, config.num_devices, config.tpu)
    trainer = RNNTrainer(config, genotype, corpus, strategy)
    d = run_dir.prepare(config.model_dir)
    if trainer.chief:
        run_dir.write_json(os.path.join(d, "config.json"),
                           {**config.to_dict(), "genotype_spec": genotype.to_dict()})
        run_dir.write_json(os.path.join(d, "genotype.json"), genotype.to_dict())
        print(f"Language model: vocabulary {corpus.vocab_size:,}, emsize = nhid = "
              f"{config.nhid}, {trainer.parameters:,} parameters (tied weights)", flush=True)
    metrics = trainer.train()
    export_dir = None
    if trainer.chief:
        summary = {**metrics, "parameters": trainer.parameters, "epochs": config.epochs,
                   "vocab_size": corpus.vocab_size, "averaged_sgd": trainer.averaging,
                   "genotype": genotype.to_dict()}
        run_dir.write_json(os.path.join(d, "result.json"), summary)
        export_dir = os.path.join(d, "export") if config.export else None
        if export_dir and not _keep_export(trainer, export_dir):
            with progress.note(f"Exporting SavedModel to {export_dir}"):
                lm_export.export_language_model(
                    trainer.export_model(), export_dir, vocab=corpus.vocab,
                    metadata={"genotype": genotype.to_dict(), "dataset": config.data.dataset,
                              "parameters": trainer.parameters, "emsize": config.emsize,
                              "bptt": config.bptt, **metrics})
    return RNNTrainResult(config.model_dir, genotype, trainer.parameters, metrics, export_dir,
                          trainer, getattr(trainer, "history", []))
