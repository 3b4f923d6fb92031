"""End-to-end search: config -> data -> supernet search -> run-directory outputs.

``run_search`` searches CNN cells on images, ``run_rnn_search`` a recurrent
cell on a text corpus; both write the same run-directory layout.

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

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from autonet_tf import progress
from autonet_tf.configs import RNNSearchConfig, SearchConfig
from autonet_tf.data import images, text
from autonet_tf.distribute.strategy import create_strategy, is_chief
from autonet_tf.search_space.genotypes import Genotype
from autonet_tf.search_space.rnn_genotypes import RecurrentGenotype
from autonet_tf.training import rnn_search_trainer, run_dir
from autonet_tf.training.search_trainer import SearchTrainer, check_resumable
from autonet_tf.viz.cells import plot_genotype

log = logging.getLogger("autonet_tf")


@dataclasses.dataclass
class SearchResult:
    genotype: Genotype | RecurrentGenotype
    model_dir: str
    pictures: list[str]
    warnings: list[str]
    history: list[dict] = dataclasses.field(default_factory=list)  # one record per epoch


def run_search(config: SearchConfig, strategy: tf.distribute.Strategy | None = None,
               dataset: images.ImageDataset | None = None) -> SearchResult:
    """Validates ``config``, runs or resumes the search, writes the run directory."""
    config.validate()
    run_dir.check_writable_parent(config.model_dir)
    check_resumable(config.model_dir, config)
    if dataset is None:
        dataset = images.load(config.data, config.seed)
    if strategy is None:
        strategy = create_strategy(config.strategy, config.num_devices, config.tpu)
    with progress.note(f"Building the supernet ({config.layers} cells, C={config.init_channels})",
                       enabled=config.progress and is_chief(strategy)):
        trainer = SearchTrainer(config, dataset, strategy)  # validates sizes; writes nothing
    if config.progress and is_chief(strategy):
        print(describe_supernet(trainer.model), flush=True)
        print(describe_guard(config), flush=True)
    return _finish_search(config, trainer, strategy)


def describe_guard(config: SearchConfig) -> str:
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


def run_rnn_search(config: RNNSearchConfig, strategy: tf.distribute.Strategy | None = None,
                   corpus: text.Corpus | None = None) -> SearchResult:
    """The recurrent-cell search (:class:`~autonet_tf.configs.RNNSearchConfig`).

    Same run directory as the CNN search, with ``alphas`` of shape (36, 5)
    and one picture, ``genotype_recurrent.png``.
    """
    config.validate()
    run_dir.check_writable_parent(config.model_dir)
    rnn_search_trainer.check_resumable(config.model_dir, config)
    if corpus is None:
        corpus = text.load(config.data.dataset, config.data.data_dir)
    if strategy is None:
        strategy = create_strategy(config.strategy, config.num_devices, config.tpu)
    trainer = rnn_search_trainer.RNNSearchTrainer(config, corpus, strategy)
    return _finish_search(config, trainer, strategy)


def _finish_search(config, trainer, strategy) -> SearchResult:
    """Writes config.json, runs the search, writes genotype, alphas and pictures."""
    chief = is_chief(strategy)
    run_dir.prepare(config.model_dir)
    if chief:
        run_dir.write_json(os.path.join(config.model_dir, "config.json"), config.to_dict())
    genotype = trainer.search()
    pictures, warnings = [], []
    if chief:
        d = config.model_dir
        run_dir.write_json(os.path.join(d, "genotype.json"), genotype.to_dict())
        run_dir.write_json(os.path.join(d, "alphas.json"), trainer.softmax_alphas())
        pictures, warnings = plot_genotype(genotype, os.path.join(d, "genotype"))
        for warning in warnings:
            print(f"warning: {warning}", flush=True)
    return SearchResult(genotype, config.model_dir, pictures, warnings,
                        getattr(trainer, "history", []))
