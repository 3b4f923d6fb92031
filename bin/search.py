#!/usr/bin/env python
"""DARTS cell search.

    python bin/search.py                                  # embedded digits, quick
    python bin/search.py --dataset=cifar10 --data_dir=~/tensorflow_datasets
    python bin/search.py --dataset=cifar10 --order=second --model_dir=runs/c10

Flags left unset take the DARTS paper's values (train_search.py), except on
the embedded 'digits' dataset, where a smaller supernet and fewer epochs make
the whole run take minutes on 2 CPU cores. Rerunning the same command resumes
from the last checkpoint in --model_dir.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli  # noqa: E402
from autonet_tf.configs import STRATEGIES, DataConfig, SearchConfig  # noqa: E402

_D = SearchConfig()
flags.DEFINE_enum("model", "cnn", ["cnn"], "What to search: CNN cells.")
flags.DEFINE_string("dataset", "digits", "'digits' (embedded), a tfds name (cifar10, cifar100, "
                    "mnist, fashion_mnist, svhn_cropped), an .npz file (MedMNIST layout) or a "
                    "folder of class sub-folders.")
flags.DEFINE_string("data_dir", None, "tfds data directory (datasets prepared with `tfds build`).")
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
flags.DEFINE_enum("strategy", _D.strategy, list(STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_integer("num_devices", None, "Replicas for --strategy=mirrored (without GPUs the "
                     "CPU is split into this many logical devices).")
flags.DEFINE_string("tpu", None, "TPU address for --strategy=tpu.")
flags.DEFINE_bool("jit_compile", False, "Compile the forward/backward pass with XLA.")
flags.DEFINE_enum("augment", "auto", ["auto", "on", "off"],
                  "Random crop + flip (auto: on for CIFAR).")
flags.DEFINE_integer("image_size", None, "Resize image-folder datasets to this size.")
flags.DEFINE_integer("max_steps_per_epoch", None, "Cap on steps per epoch (quick runs).")
flags.DEFINE_integer("checkpoint_every", _D.checkpoint_every, "Steps between checkpoints.")
flags.DEFINE_bool("progress", True, "Show a progress bar per epoch.")

FLAGS = flags.FLAGS

# The embedded dataset's quick preset for flags the user did not set.
DIGITS_PRESET = {"epochs": 10, "layers": 5, "init_channels": 8}


def build_config() -> SearchConfig:
    values = {name: FLAGS[name].value for name in (
        "order", "epochs", "batch_size", "layers", "init_channels", "train_portion",
        "learning_rate", "learning_rate_min", "momentum", "weight_decay", "grad_clip",
        "arch_learning_rate", "arch_weight_decay", "seed", "strategy", "num_devices",
        "tpu", "jit_compile", "max_steps_per_epoch", "checkpoint_every", "progress")}
    if FLAGS.dataset == "digits":
        for name in cli.unset_flags(DIGITS_PRESET):
            values[name] = DIGITS_PRESET[name]
    name = os.path.splitext(os.path.basename(os.path.normpath(FLAGS.dataset)))[0] or "data"
    values["model_dir"] = FLAGS.model_dir or os.path.join("runs", f"search_{name}")
    data = DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, augment=FLAGS.augment,
                      image_size=FLAGS.image_size)
    config = SearchConfig(data=data, **values)
    config.validate()
    return config


def main(argv):
    del argv
    config = build_config()
    from autonet_tf.distribute.strategy import prepare_devices

    prepare_devices(config.strategy, config.num_devices)
    from autonet_tf.search import run_search

    result = run_search(config)
    print(f"Final genotype: {result.genotype}")
    print(f"Run directory: {result.model_dir}")


if __name__ == "__main__":
    cli.run(main)
