"""Train a discovered network from scratch, evaluate it, export it.

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

from autonet_tf import export
from autonet_tf.configs import TrainConfig
from autonet_tf.data import images
from autonet_tf.distribute.strategy import create_strategy
from autonet_tf.search_space.genotypes import Genotype, load_genotype
from autonet_tf.training import run_dir
from autonet_tf.training.network_trainer import NetworkTrainer, check_resumable


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
        if config.export:
            export_dir = os.path.join(d, "export")
            export.export_classifier(
                trainer.model, export_dir, input_shape=dataset.input_shape,
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
