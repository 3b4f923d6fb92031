#!/usr/bin/env python
"""Did the search find anything better than chance? Searched cell vs random cells.

    python bin/benchmark_search.py                              # digits, about 20 min on 2 cores
    python bin/benchmark_search.py --random_genotypes=8 --train_seeds=3 --train_epochs=30
    python bin/benchmark_search.py --dataset=cifar10 --search_epochs=50 --train_epochs=100 \\
        --train_layers=8 --train_init_channels=16 --collapse_guard=off

Runs one DARTS search (seed --seed; on digits the quick preset of
bin/search.py, elsewhere the paper's settings unless --search_* flags say
otherwise), then trains the searched genotype and --random_genotypes cells
drawn uniformly from the same space (every node: two distinct inputs, an op
each, 'none' excluded), each with --train_seeds seeds, all with the same
network size and training budget. Prints one JSON line per training run,
then a table and one JSON summary line: mean +- std test accuracy per cell,
parameter counts, seconds, and the searched cell's rank among all cells by
mean test accuracy (1 = best). --output also writes the summary as JSON.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli  # noqa: E402

flags.DEFINE_string("dataset", "digits", "Dataset (any the search program reads).")
flags.DEFINE_string("data_dir", None, "Where tfds datasets are prepared.")
flags.DEFINE_integer("seed", 2, "Seed of the search (and of the random cells' draw).")
flags.DEFINE_integer("random_genotypes", 4, "Random cells to train (K).")
flags.DEFINE_integer("train_seeds", 2, "Training seeds per cell.")
flags.DEFINE_integer("search_epochs", None, "Search epochs (digits: 10, else 50).")
flags.DEFINE_enum("order", "first", ["first", "second"], "Architecture gradient order.")
flags.DEFINE_enum("collapse_guard", "auto", ["auto", "on", "off"], "The search's collapse "
                  "guard (see bin/search.py).")
flags.DEFINE_integer("train_epochs", 20, "Training epochs of every cell.")
flags.DEFINE_integer("train_layers", 8, "Cells of every trained network.")
flags.DEFINE_integer("train_init_channels", 16, "Initial channels of every trained network.")
flags.DEFINE_integer("train_batch_size", 64, "Training batch size.")
flags.DEFINE_string("directory", "/tmp/autonet_search_benchmark", "Scratch directory (one "
                    "run directory per search and training; rerunning resumes).")
flags.DEFINE_string("output", None, "Also write the summary JSON here.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import json
    import statistics
    import time

    import numpy as np

    from autonet_tf import cli_flags
    from autonet_tf.configs import DataConfig, SearchConfig, TrainConfig
    from autonet_tf.data import images
    from autonet_tf.search import run_search
    from autonet_tf.search_space.genotypes import random_genotype
    from autonet_tf.train import run_train

    for name in ("random_genotypes", "train_seeds", "train_epochs", "train_layers",
                 "train_init_channels", "train_batch_size"):
        if FLAGS[name].value <= 0:
            cli.fail(f"--{name}={FLAGS[name].value} is invalid: expected an integer > 0")
    data = DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir)
    digits = FLAGS.dataset == "digits"
    search_values = dict(cli_flags.DIGITS_SEARCH_PRESET) if digits else {}
    if FLAGS.search_epochs:
        search_values["epochs"] = FLAGS.search_epochs
    search = SearchConfig(data=data, model_dir=os.path.join(FLAGS.directory, "search"),
                          order=FLAGS.order, seed=FLAGS.seed,
                          collapse_guard=FLAGS.collapse_guard, **search_values)
    search.validate()
    dataset = images.load(data, FLAGS.seed)

    started = time.time()
    print(f"Searching ({search.epochs} epochs, {search.layers} cells, "
          f"C={search.init_channels}, seed {FLAGS.seed})", flush=True)
    result = run_search(search, dataset=dataset)
    search_s = round(time.time() - started, 1)
    guard = next((r["collapse_guard"] for r in result.history if "collapse_guard" in r), None)
    rng = np.random.default_rng(FLAGS.seed)
    cells = [("searched", result.genotype)] + [
        (f"random_{k + 1}", random_genotype(rng, search.steps, search.multiplier))
        for k in range(FLAGS.random_genotypes)]

    runs = []
    total = len(cells) * FLAGS.train_seeds
    for name, genotype in cells:
        for seed in range(FLAGS.train_seeds):
            config = TrainConfig(
                data=data, genotype="searched", seed=seed, progress=False, export=False,
                model_dir=os.path.join(FLAGS.directory, f"{name}_seed{seed}"),
                epochs=FLAGS.train_epochs, batch_size=FLAGS.train_batch_size,
                layers=FLAGS.train_layers, init_channels=FLAGS.train_init_channels,
                auxiliary=False, drop_path_prob=0.0, cutout_length=0)
            t = time.time()
            trained = run_train(config, dataset=dataset, genotype=genotype)
            run = {"cell": name, "seed": seed, "test_accuracy": round(trained.test_accuracy, 4),
                   "test_loss": round(trained.test_loss, 4), "parameters": trained.parameters,
                   "seconds": round(time.time() - t, 1)}
            runs.append(run)
            print(f"[{len(runs)}/{total}] {json.dumps(run)}", flush=True)

    table = []
    for name, genotype in cells:
        mine = [r for r in runs if r["cell"] == name]
        accs = [r["test_accuracy"] for r in mine]
        table.append({"cell": name, "mean_test_accuracy": round(statistics.mean(accs), 4),
                      "std_test_accuracy": round(statistics.pstdev(accs), 4),
                      "parameters": mine[0]["parameters"],
                      "seconds": round(sum(r["seconds"] for r in mine), 1),
                      "genotype": genotype.to_dict()})
    order = sorted(table, key=lambda row: -row["mean_test_accuracy"])
    rank = 1 + order.index(table[0])
    print(f"\n{'cell':<10} {'test accuracy':>18} {'parameters':>11} {'seconds':>8}")
    for row in order:
        print(f"{row['cell']:<10} {row['mean_test_accuracy']:>10.4f} +- "
              f"{row['std_test_accuracy']:.4f} {row['parameters']:>11,} {row['seconds']:>8.1f}")
    summary = {"benchmark": "searched_vs_random", "dataset": FLAGS.dataset,
               "search_seed": FLAGS.seed, "search_epochs": search.epochs,
               "search_seconds": search_s, "collapse_guard": guard,
               "train_epochs": FLAGS.train_epochs, "train_seeds": FLAGS.train_seeds,
               "random_genotypes": FLAGS.random_genotypes, "searched_rank": rank,
               "cells": len(cells), "table": table,
               "total_seconds": round(time.time() - started, 1)}
    print(f"searched cell rank: {rank} of {len(cells)}")
    print(json.dumps(summary), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    cli.run(main)
