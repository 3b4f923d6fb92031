#!/usr/bin/env python
"""Evaluate an exported classifier (a SavedModel written by bin/train.py or bin/search.py).

    python bin/evaluate.py --saved_model=runs/train_digits/export/saved_model
    python bin/evaluate.py --saved_model=DIR --dataset=cifar10 --data_dir=~/tensorflow_datasets \
        --output_dir=runs/eval

Loads the SavedModel in this fresh process with tf.saved_model.load (no model
code involved), runs the test split of --dataset (default: the dataset named
in the export's metadata) and prints loss, top-1 and (more than 5 classes)
top-5 accuracy and the confusion matrix. With --output_dir it also writes
metrics.json and confusion_matrix.png there.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli  # noqa: E402

flags.DEFINE_string("saved_model", None, "The exported SavedModel directory "
                    "(<run>/export/saved_model).", required=True)
flags.DEFINE_string("dataset", None, "Dataset to evaluate on (default: the one in the export's "
                    "metadata); same choices as bin/train.py.")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_integer("image_size", None, "Resize image-folder datasets (default: the model's).")
flags.DEFINE_integer("batch_size", 256, "Images per inference call.")
flags.DEFINE_integer("seed", None, "Seed of the train/test split of datasets that have none "
                     "(digits, image folders); default: the training run's, from the metadata.")
flags.DEFINE_string("output_dir", None, "Also write metrics.json and confusion_matrix.png here.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.batch_size <= 0:
        cli.fail(f"--batch_size={FLAGS.batch_size} is invalid: expected an integer > 0")
    from autonet_tf.configs import DataConfig
    from autonet_tf.evaluate import evaluate_export, format_confusion, write_report

    data = None
    if FLAGS.dataset is not None:
        data = DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
                          image_size=FLAGS.image_size)
    result = evaluate_export(FLAGS.saved_model, data, FLAGS.batch_size, FLAGS.seed)
    line = f"test images {result.count} | loss {result.loss:.4f} | top-1 {result.top1:.4f}"
    if result.top5 is not None:
        line += f" | top-5 {result.top5:.4f}"
    print(line)
    print("confusion matrix:")
    print(format_confusion(result))
    if FLAGS.output_dir:
        for path in write_report(result, FLAGS.output_dir):
            print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
