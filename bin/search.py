#!/usr/bin/env python
"""DARTS cell search.

    python bin/search.py                                  # embedded digits, quick
    python bin/search.py --dataset=cifar10 --data_dir=~/tensorflow_datasets
    python bin/search.py --dataset=cifar10 --order=second --model_dir=runs/c10

Flags left unset take the DARTS paper's values (train_search.py), except on
the embedded 'digits' dataset, where a smaller supernet and fewer epochs make
the whole run take minutes on 2 CPU cores. After the search the discovered
network is trained from scratch (--train_* flags, the paper's train.py
defaults; quick ones on digits) and exported to <model_dir>/train/export;
--noretrain stops after the search. Rerunning the same command resumes from
the last checkpoint of whichever stage was interrupted.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli  # noqa: E402
from autonet_tf import cli_flags  # noqa: E402
from autonet_tf.configs import SearchConfig  # noqa: E402

_D = SearchConfig()
flags.DEFINE_enum("model", "cnn", ["cnn"], "What to search: CNN cells.")
flags.DEFINE_string("model_dir", None, "Run directory (default runs/search_<dataset>).")
flags.DEFINE_enum("order", _D.order, ["first", "second"], "Architecture gradient order.")
flags.DEFINE_integer("epochs", _D.epochs, "Search epochs.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size (split over replicas).")
flags.DEFINE_integer("layers", _D.layers, "Cells in the supernet.")
flags.DEFINE_integer("init_channels", _D.init_channels, "Channels of the first cells.")
flags.DEFINE_float("train_portion", _D.train_portion,
                   "Fraction of the training split used for weights; the rest trains alphas.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Initial weight learning rate (SGD).")
flags.DEFINE_float("learning_rate_min", _D.learning_rate_min, "Final cosine learning rate.")
flags.DEFINE_float("momentum", _D.momentum, "SGD momentum.")
flags.DEFINE_float("weight_decay", _D.weight_decay, "Weight L2 decay.")
flags.DEFINE_float("grad_clip", _D.grad_clip, "Global gradient-norm clip of the weights.")
flags.DEFINE_float("arch_learning_rate", _D.arch_learning_rate, "Adam learning rate of alphas.")
flags.DEFINE_float("arch_weight_decay", _D.arch_weight_decay, "L2 decay of alphas.")
flags.DEFINE_integer("seed", _D.seed, "Random seed.")
flags.DEFINE_bool("retrain", True, "After the search, train the discovered network from "
                  "scratch (--train_* flags) and export it to <model_dir>/train/export; "
                  "--noretrain stops after the search.")
cli_flags.define_data_flags()
cli_flags.define_runtime_flags(_D.checkpoint_every)
cli_flags.define_train_flags(prefix="train_")

FLAGS = flags.FLAGS

# The embedded dataset's quick preset for flags the user did not set.
DIGITS_PRESET = {"epochs": 10, "layers": 5, "init_channels": 8}


def build_config() -> SearchConfig:
    values = {name: FLAGS[name].value for name in (
        "order", "epochs", "batch_size", "layers", "init_channels", "train_portion",
        "learning_rate", "learning_rate_min", "momentum", "weight_decay", "grad_clip",
        "arch_learning_rate", "arch_weight_decay", "seed")}
    values.update(cli_flags.runtime_values())
    if FLAGS.dataset == "digits":
        for name in cli.unset_flags(DIGITS_PRESET):
            values[name] = DIGITS_PRESET[name]
    values["model_dir"] = FLAGS.model_dir or os.path.join(
        "runs", f"search_{cli_flags.dataset_stem()}")
    config = SearchConfig(data=cli_flags.data_config(), **values)
    config.validate()
    return config


def main(argv):
    del argv
    config = build_config()
    train_config = None
    if FLAGS.retrain:  # validate every flag before any work starts
        train_config = cli_flags.train_config(
            "train_", config.data, os.path.join(config.model_dir, "train"),
            os.path.join(config.model_dir, "genotype.json"), config.seed)
    from autonet_tf.distribute.strategy import create_strategy, prepare_devices

    prepare_devices(config.strategy, config.num_devices)
    from autonet_tf.search import run_search

    # One strategy for both stages: two MirroredStrategy objects in one
    # process mix up their collective-op keys (synchronised BatchNorm fails).
    strategy = create_strategy(config.strategy, config.num_devices, config.tpu)
    result = run_search(config, strategy=strategy)
    print(f"Final genotype: {result.genotype}")
    print(f"Run directory: {result.model_dir}")
    if train_config is None:
        return
    from autonet_tf.train import run_train

    print(f"Training the discovered network from scratch ({train_config.epochs} epochs)",
          flush=True)
    trained = run_train(train_config, strategy=strategy, genotype=result.genotype)
    print(f"Test accuracy: {trained.test_accuracy:.4f} (loss {trained.test_loss:.4f}), "
          f"{trained.parameters:,} parameters")
    if trained.export_dir:
        print(f"Exported: {trained.export_dir}")


if __name__ == "__main__":
    cli.run(main)
