"""Train a discovered network from scratch, evaluate it, export it.

``run_train`` trains a CNN cell's image classifier, ``run_rnn_train`` a
recurrent cell's language model; both are :mod:`autonet_tf.tasks` run by
the one driver.

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

import tensorflow as tf

from autonet_tf.configs import RNNTrainConfig, TrainConfig
from autonet_tf.data import images, text
from autonet_tf.search_space.genotypes import Genotype
from autonet_tf.search_space.rnn_genotypes import RecurrentGenotype
from autonet_tf.tasks import CNNTrainTask, RNNTrainResult, RNNTrainTask, TrainResult, run

__all__ = ["run_train", "run_rnn_train", "TrainResult", "RNNTrainResult"]


def run_train(config: TrainConfig, strategy: tf.distribute.Strategy | None = None,
              dataset: images.ImageDataset | None = None,
              genotype: Genotype | None = None) -> TrainResult:
    """Validates ``config``, trains (or resumes), evaluates and exports.

    ``genotype`` overrides ``config.genotype`` (used when a search hands its
    result straight to training).
    """
    return run(CNNTrainTask(config, dataset, genotype), strategy)


def run_rnn_train(config: RNNTrainConfig, strategy: tf.distribute.Strategy | None = None,
                  corpus: text.Corpus | None = None,
                  genotype: RecurrentGenotype | None = None) -> RNNTrainResult:
    """Trains a recurrent cell's language model (or resumes), scores it, exports it.

    Run directory as for CNN training; ``result.json`` holds valid and test
    perplexity, and ``export/`` the SavedModel with ``vocab.txt``
    (:mod:`autonet_tf.lm_export`).
    """
    return run(RNNTrainTask(config, corpus, genotype), strategy)
