"""Train a discovered network from scratch, evaluate it on the test split, export it.

    python bin/train.py --genotype=DARTS_V2                       # embedded digits
    python bin/train.py --genotype=runs/search_digits/genotype.json --tflite
    python bin/train.py --genotype=DARTS_V2 --dataset=cifar10 --data_dir=~/tensorflow_datasets
    python bin/train.py --model=rnn --genotype=DARTS_V2           # generated corpus
    python bin/train.py --model=rnn --genotype=DARTS_V2 --dataset=ptb --data_dir=~/data/penn

Flags left unset take the DARTS paper's values (train.py: 600 epochs, batch
96, 20 cells, C=36, auxiliary 0.4, drop path 0.2, cutout 16), except on the
embedded 'digits' dataset, where a small network trains in about a minute.
Rerunning the same command resumes from the last checkpoint in --model_dir.
The export (SavedModel + metadata.json, model.tflite with --tflite) lands in
<model_dir>/export.

--model=rnn trains a recurrent cell's language model with the reference
rnn/train.py values (emsize = nhid = 850, batch 64, SGD lr 20 then averaged
SGD, 8000 epochs at most), or small ones on the generated 'synthetic' corpus;
the export scores token sequences (SavedModel + vocab.txt).
"""

import os

from absl import flags

from autonet_tf import cli, cli_flags
from autonet_tf.errors import UserInputError

flags.DEFINE_enum("model", "cnn", ["cnn", "rnn"],
                  "CNN cells (image classifier) or a recurrent cell (language model).")
flags.DEFINE_string("genotype", None, "DARTS_V1, DARTS_V2, a genotype JSON file (e.g. "
                    "<search run>/genotype.json) or inline genotype JSON; required unless "
                    "--config_file names one.")
flags.DEFINE_string("model_dir", None, "Run directory (default runs/train_<dataset>).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("export", True, "Export the trained network to <model_dir>/export.")
cli_flags.define_data_flags()
cli_flags.define_train_flags()
cli_flags.define_runtime_flags()
cli_flags.define_config_file_flags()
cli_flags.define_rnn_flags(train=True)
FLAGS = flags.FLAGS

def rnn_config():
    from autonet_tf.configs import RNNTrainConfig

    cli_flags.reject_other_models("rnn")
    data = cli_flags.text_data_config()
    model_dir = FLAGS.model_dir or os.path.join(
        "runs", "train_rnn_" + (os.path.basename(os.path.normpath(data.dataset)) or "data"))
    names = {n: n for n in cli_flags.RNN_FLAGS + cli_flags.RNN_SHARED + ("nonmono",)}
    return cli_flags.apply_config_files(cli_flags.rnn_config(
        RNNTrainConfig, data, model_dir, names,
        cli_flags.SYNTHETIC_TRAIN_PRESET if data.dataset == "synthetic" else None,
        genotype=FLAGS.genotype, export=FLAGS.export))


def cnn_config():
    cli_flags.reject_other_models("cnn")
    model_dir = FLAGS.model_dir or os.path.join("runs", f"train_{cli_flags.dataset_stem()}")
    return cli_flags.apply_config_files(cli_flags.train_config(
        "", cli_flags.data_config(), model_dir, FLAGS.genotype, FLAGS.seed,
        export=FLAGS.export))


def main(argv):
    del argv
    cli_flags.read_config_files()
    if not FLAGS.genotype:
        raise UserInputError("--genotype must have a value: DARTS_V1, DARTS_V2, a genotype JSON "
                             "file, inline JSON, or a --config_file of a training run")
    rnn = FLAGS.model == "rnn"
    config = rnn_config() if rnn else cnn_config()
    if rnn:
        from autonet_tf.search_space.rnn_genotypes import load_recurrent_genotype as load
    else:
        from autonet_tf.search_space.genotypes import load_genotype as load
    genotype = cli_flags.check_before_tensorflow(config, load)
    cli.start_tensorflow()
    from autonet_tf import tasks
    from autonet_tf.distribute.strategy import strategy_for

    task = (tasks.RNNTrainTask if rnn else tasks.CNNTrainTask)(config, genotype=genotype)
    result = tasks.run(task, strategy_for(config))
    print(result.summary())
    print(f"Run directory: {result.model_dir}")


def run() -> None:
    """The console entry point ``autonet-train``."""
    cli.run(main, flags_first=True)


if __name__ == "__main__":
    run()
