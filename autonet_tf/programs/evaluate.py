"""Evaluate an exported model (a SavedModel written by bin/train.py or bin/search.py).

    python bin/evaluate.py --saved_model=runs/train_digits/export/saved_model
    python bin/evaluate.py --saved_model=DIR --dataset=cifar10 --data_dir=~/tensorflow_datasets \
        --output_dir=runs/eval
    python bin/evaluate.py --saved_model=runs/train_rnn_synthetic/export/saved_model
    python bin/evaluate.py --saved_model=DIR --dataset=ptb --data_dir=~/data/penn --split=valid

Loads the SavedModel in this fresh process with tf.saved_model.load (no model
code involved), runs the test split of --dataset (default: the dataset named
in the export's metadata) and prints loss, top-1 and (more than 5 classes)
top-5 accuracy and the confusion matrix. With --output_dir it also writes
metrics.json and confusion_matrix.png there (the chief only). --strategy
(mirrored, multi_worker, tpu) splits every --batch_size batch of a
classifier across the replicas.

For a language model it prints the perplexity of --split (test) read with
the export's vocabulary (unknown words count as <unk>) in --bptt windows
over --batch_size rows (default 10, as the reference evaluation).
"""

import os

from absl import flags

from autonet_tf import cli
from autonet_tf import cli_flags

flags.DEFINE_string("saved_model", None, "The exported SavedModel directory "
                    "(<run>/export/saved_model, or the export folder <run>/export "
                    "that holds it).", required=True)
flags.DEFINE_string("dataset", None, "Dataset to evaluate on (default: the one in the export's "
                    "metadata); same choices as bin/train.py.")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_integer("image_size", None, "Resize image-folder datasets (default: the model's).")
flags.DEFINE_integer("batch_size", 256, "Images per inference call (language models: rows "
                     "of the token stream, default 10).")
flags.DEFINE_enum("split", "test", ["test", "valid"], "Language models: the corpus split.")
flags.DEFINE_integer("bptt", None, "Language models: tokens per window (default: training's).")
flags.DEFINE_integer("seed", None, "Seed of the train/test split of datasets that have none "
                     "(digits, image folders); default: the training run's, from the metadata.")
flags.DEFINE_string("output_dir", None, "Also write metrics.json and confusion_matrix.png here.")
cli_flags.define_strategy_flags()  # classifiers: each --batch_size batch split over replicas
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.batch_size <= 0:
        cli.fail(f"--batch_size={FLAGS.batch_size} is invalid: expected an integer > 0")
    from autonet_tf.io import run_dir, saved_models

    # A wrong --saved_model is answered before TensorFlow starts.
    saved_model = saved_models.find_saved_model(FLAGS.saved_model)
    meta = saved_models.read_metadata(
        saved_model, (saved_models.IMAGE_CLASSIFIER, saved_models.LANGUAGE_MODEL))
    cli.start_tensorflow()
    from autonet_tf.configs import DataConfig
    from autonet_tf.evaluate import (evaluate_export, evaluate_language_model,
                                     format_confusion, write_report)

    if meta["format"] == saved_models.LANGUAGE_MODEL:
        if FLAGS.strategy != "default":
            print(f"warning: --strategy={FLAGS.strategy} is ignored for language models "
                  "(their perplexity is computed on one device)", flush=True)
        if FLAGS.bptt is not None and FLAGS.bptt <= 0:
            cli.fail(f"--bptt={FLAGS.bptt} is invalid: expected an integer > 0")
        result = evaluate_language_model(
            saved_model, FLAGS.dataset, FLAGS.data_dir, FLAGS.split,
            FLAGS.batch_size if FLAGS["batch_size"].present else 10, FLAGS.bptt)
        print(f"{result['split']} tokens {result['tokens']} ({result['unknown_words']} unknown "
              f"words read as <unk>) | loss {result['loss']:.4f} | perplexity "
              f"{result['perplexity']:.2f}")
        if FLAGS.output_dir:
            path = os.path.join(run_dir.prepare(FLAGS.output_dir, "output_dir"), "metrics.json")
            run_dir.write_json(path, result)
            print(f"wrote {path}")
        return

    from autonet_tf.distribute.strategy import is_chief, strategy_for

    strategy = strategy_for(FLAGS)
    data = None
    if FLAGS.dataset is not None:
        data = DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
                          image_size=FLAGS.image_size)
    result = evaluate_export(saved_model, data, FLAGS.batch_size, FLAGS.seed, strategy)
    line = f"test images {result.count} | loss {result.loss:.4f} | top-1 {result.top1:.4f}"
    if result.top5 is not None:
        line += f" | top-5 {result.top5:.4f}"
    print(line)
    print("confusion matrix:")
    print(format_confusion(result))
    if FLAGS.output_dir and is_chief(strategy):
        for path in write_report(result, FLAGS.output_dir):
            print(f"wrote {path}")


def run() -> None:
    """The console entry point ``autonet-evaluate``."""
    cli.run(main, flags_first=True)


if __name__ == "__main__":
    run()
