"""End-to-end search: config -> data -> supernet search -> run-directory outputs.

``run_search`` searches CNN cells on images, ``run_rnn_search`` a recurrent
cell on a text corpus; both are :mod:`autonet_tf.tasks` run by the one
driver and write the same run-directory layout.

Run directory (``config.model_dir``)::

    config.json              the full validated config
    checkpoints/             tf.train.CheckpointManager (resume after a kill)
    logs/train, logs/val     TensorBoard: losses, accuracies, learning rates,
                             per-op alpha weights and alpha heat maps
    history.jsonl            one JSON line per epoch (losses, accuracies, genotype)
    genotypes/epoch_NNN.json genotype after every epoch
    alphas/epoch_NNN.json    softmaxed alphas after every epoch
    genotype.json            the final genotype
    alphas.json              the final softmaxed alphas
    genotype_normal.png      pictures of the cells (.dot without graphviz)
    genotype_reduce.png      (recurrent search: genotype_recurrent.png)
"""

from __future__ import annotations

import tensorflow as tf

from autonet_tf.configs import RNNSearchConfig, SearchConfig
from autonet_tf.data import images, text
from autonet_tf.tasks import CNNSearchTask, RNNSearchTask, SearchResult, run

__all__ = ["run_search", "run_rnn_search", "SearchResult"]


def run_search(config: SearchConfig, strategy: tf.distribute.Strategy | None = None,
               dataset: images.ImageDataset | None = None) -> SearchResult:
    """Validates ``config``, runs or resumes the search, writes the run directory."""
    return run(CNNSearchTask(config, dataset), strategy)


def run_rnn_search(config: RNNSearchConfig, strategy: tf.distribute.Strategy | None = None,
                   corpus: text.Corpus | None = None) -> SearchResult:
    """The recurrent-cell search (:class:`~autonet_tf.configs.RNNSearchConfig`).

    Same run directory as the CNN search, with ``alphas`` of shape (36, 5)
    and one picture, ``genotype_recurrent.png``.
    """
    return run(RNNSearchTask(config, corpus), strategy)
