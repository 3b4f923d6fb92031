#!/usr/bin/env python
"""Train a discovered network from scratch, evaluate it on the test split, export it.

    python bin/train.py --genotype=DARTS_V2                       # embedded digits
    python bin/train.py --genotype=runs/search_digits/genotype.json --tflite
    python bin/train.py --genotype=DARTS_V2 --dataset=cifar10 --data_dir=~/tensorflow_datasets

Flags left unset take the DARTS paper's values (train.py: 600 epochs, batch
96, 20 cells, C=36, auxiliary 0.4, drop path 0.2, cutout 16), except on the
embedded 'digits' dataset, where a small network trains in about a minute.
Rerunning the same command resumes from the last checkpoint in --model_dir.
The export (SavedModel + metadata.json, model.tflite with --tflite) lands in
<model_dir>/export.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli, cli_flags  # noqa: E402

flags.DEFINE_string("genotype", None, "DARTS_V1, DARTS_V2, a genotype JSON file (e.g. "
                    "<search run>/genotype.json) or inline genotype JSON.", required=True)
flags.DEFINE_string("model_dir", None, "Run directory (default runs/train_<dataset>).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("export", True, "Export the trained network to <model_dir>/export.")
cli_flags.define_data_flags()
cli_flags.define_train_flags()
cli_flags.define_runtime_flags()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    model_dir = FLAGS.model_dir or os.path.join("runs", f"train_{cli_flags.dataset_stem()}")
    config = cli_flags.train_config("", cli_flags.data_config(), model_dir, FLAGS.genotype,
                                    FLAGS.seed, export=FLAGS.export)
    from autonet_tf.distribute.strategy import prepare_devices

    prepare_devices(config.strategy, config.num_devices)
    from autonet_tf.train import run_train

    result = run_train(config)
    print(f"Test accuracy: {result.test_accuracy:.4f} (loss {result.test_loss:.4f}), "
          f"{result.parameters:,} parameters")
    if result.export_dir:
        print(f"Exported: {result.export_dir}")
    print(f"Run directory: {result.model_dir}")


if __name__ == "__main__":
    cli.run(main)
