"""DARTS cell search: CNN cells on images or a recurrent cell on a text corpus.

    python bin/search.py                                  # embedded digits, quick
    python bin/search.py --dataset=cifar10 --data_dir=~/tensorflow_datasets
    python bin/search.py --dataset=cifar10 --order=second --model_dir=runs/c10
    python bin/search.py --model=rnn                      # generated corpus, quick
    python bin/search.py --model=rnn --dataset=ptb --data_dir=~/data/penn

Flags left unset take the DARTS paper's values (train_search.py), except on
the embedded 'digits' dataset, where a smaller supernet and fewer epochs make
the whole run take minutes on 2 CPU cores. With --model=rnn, unset flags take
the reference rnn/train_search.py values (emsize = nhid = 300, batch 256,
bptt 35, SGD lr 20, clip 0.25), or small ones on the generated 'synthetic'
corpus (the --model=rnn default dataset). After the search the discovered
network is trained from scratch (--train_* flags, the paper's train.py
defaults; quick ones on digits) and exported to <model_dir>/train/export;
--noretrain stops after the search. Rerunning the same command resumes from
the last checkpoint of whichever stage was interrupted.
"""

import os

from absl import flags

from autonet_tf import cli
from autonet_tf import cli_flags
from autonet_tf.configs import HESSIANS, TRACE_SHARING, SearchConfig

_D = SearchConfig()
flags.DEFINE_enum("model", "cnn", ["cnn", "rnn"],
                  "What to search: CNN cells (images) or a recurrent cell (text corpus).")
flags.DEFINE_string("model_dir", None, "Run directory (default runs/search_<dataset>).")
flags.DEFINE_enum("order", _D.order, ["first", "second"], "Architecture gradient order.")
flags.DEFINE_enum("hessian", _D.hessian, list(HESSIANS),
                  "Second order: the Hessian-vector product as the paper's central "
                  "'finite_difference' (R = 0.01/||v||) or 'exact' (the exact mixed "
                  "derivative by double backprop; a longer first step).")
flags.DEFINE_integer("epochs", _D.epochs, "Search epochs.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size (split over replicas).")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Initial weight learning rate (SGD).")
flags.DEFINE_float("weight_decay", _D.weight_decay, "Weight L2 decay.")
flags.DEFINE_float("grad_clip", _D.grad_clip, "Global gradient-norm clip of the weights.")
flags.DEFINE_float("arch_learning_rate", _D.arch_learning_rate, "Adam learning rate of alphas.")
flags.DEFINE_float("arch_weight_decay", _D.arch_weight_decay, "L2 decay of alphas.")
flags.DEFINE_integer("seed", _D.seed, "Random seed.")
flags.DEFINE_bool("retrain", True, "After the search, train the discovered network from "
                  "scratch (--train_* flags) and export it to <model_dir>/train/export; "
                  "--noretrain stops after the search.")
with cli_flags.only_for("cnn"):  # CNN cells only
    flags.DEFINE_enum("method", _D.method, ["darts", "pc_darts"],
                      "'pc_darts': partial channel connections (1/--partial_channels of the "
                      "channels through each edge's ops, then a channel shuffle) and edge "
                      "normalisation (betas), PC-DARTS; unset flags then take its CIFAR values "
                      "(batch 256, learning rate 0.1, alphas' Adam rate 6e-4, 15 warm-up epochs; "
                      "not on digits).")
    flags.DEFINE_integer("partial_channels", _D.partial_channels,
                         "PC-DARTS: K, 1/K of the channels go through the ops (CIFAR: 4).")
    flags.DEFINE_integer("layers", _D.layers, "Cells in the supernet.")
    flags.DEFINE_integer("init_channels", _D.init_channels, "Channels of the first cells.")
    flags.DEFINE_integer("steps", _D.steps, "Intermediate nodes per cell (DARTS: 4).")
    flags.DEFINE_integer("multiplier", _D.multiplier,
                         "Last intermediate nodes concatenated into the cell output (DARTS: 4).")
    flags.DEFINE_float("train_portion", _D.train_portion,
                       "Fraction of the training split used for weights; the rest trains alphas.")
    flags.DEFINE_float("learning_rate_min", _D.learning_rate_min, "Final cosine learning rate.")
    flags.DEFINE_float("momentum", _D.momentum, "SGD momentum.")
    flags.DEFINE_integer("arch_warmup_epochs", _D.arch_warmup_epochs,
                         "Epochs that train only the weights before the alphas start to move "
                         "(0: the paper's search).")
    flags.DEFINE_integer("max_skip", _D.max_skip, "At most this many skip connections in the "
                         "derived normal cell (P-DARTS: 2); unset: no cap, as the paper.")
    flags.DEFINE_enum("collapse_guard", _D.collapse_guard, ["auto", "on", "off"],
                      "Watch the search for collapse (skip connections and the Hessian eigenvalue "
                      "of the alphas, per epoch) and stop it, keeping the genotype of the last "
                      "epoch before the signal. 'auto': on, except on cifar10 (the paper's "
                      "search) and the embedded digits demo (too short for it; its eigenvalue "
                      "graph would double the demo's time); 'off': the paper's search everywhere.")
    flags.DEFINE_integer("guard_max_skip", _D.guard_max_skip, "Collapse guard: stop when the "
                         "derived normal cell holds more skip connections than this.")
    flags.DEFINE_float("guard_eigen_growth", _D.guard_eigen_growth, "Collapse guard: stop when "
                       "the mean eigenvalue of the last --guard_window epochs exceeds this many "
                       "times the mean of the window before.")
    flags.DEFINE_integer("guard_window", _D.guard_window, "Collapse guard: epochs per "
                         "eigenvalue mean.")
    flags.DEFINE_enum("trace_sharing", _D.trace_sharing, list(TRACE_SHARING),
                      "How the supernet's edges are traced: 'batched' runs the edges that "
                      "read one state together; 'inline' traces each distinct edge once and "
                      "inlines it; 'call' keeps one call per edge (shortest first step, "
                      "slower steps: for short runs); 'off' traces every edge; 'auto': "
                      "'inline' on images of 16 pixels and more (faster steps on CIFAR-10), "
                      "'batched' on smaller ones, several replicas and PC-DARTS.")
cli_flags.define_data_flags()
cli_flags.define_runtime_flags(_D.checkpoint_every)
cli_flags.define_config_file_flags()
cli_flags.define_train_flags(prefix="train_")
cli_flags.define_rnn_flags(train=False)
with cli_flags.only_for("rnn"):
    flags.DEFINE_integer("train_nhid", None, "RNN: emsize = nhid of the retrained model "
                         "(default 850, the reference train.py).")

FLAGS = flags.FLAGS

# PC-DARTS' CIFAR-10 search (train_search.py of its code) for unset flags.
PC_DARTS_PRESET = {"batch_size": 256, "learning_rate": 0.1, "arch_learning_rate": 6e-4,
                   "arch_warmup_epochs": 15}


def build_config() -> SearchConfig:
    values = {name: FLAGS[name].value for name in (
        "order", "hessian", "method", "partial_channels", "epochs", "batch_size", "layers",
        "init_channels", "steps", "multiplier", "train_portion",
        "learning_rate", "learning_rate_min", "momentum", "weight_decay", "grad_clip",
        "arch_learning_rate", "arch_weight_decay", "arch_warmup_epochs", "seed",
        "trace_sharing", "max_skip", "collapse_guard", "guard_max_skip", "guard_eigen_growth",
        "guard_window")}
    values.update(cli_flags.runtime_values())
    if FLAGS.dataset == "digits":
        for name in cli.unset_flags(cli_flags.DIGITS_SEARCH_PRESET):
            values[name] = cli_flags.DIGITS_SEARCH_PRESET[name]
    elif FLAGS.method == "pc_darts":
        for name in cli.unset_flags(PC_DARTS_PRESET):
            values[name] = PC_DARTS_PRESET[name]
    values["model_dir"] = FLAGS.model_dir or os.path.join(
        "runs", f"search_{cli_flags.dataset_stem()}")
    config = SearchConfig(data=cli_flags.data_config(), **values)
    config.validate()
    return cli_flags.apply_config_files(config)


def build_rnn_configs():
    """(RNNSearchConfig, RNNTrainConfig or None) from the flags of --model=rnn."""
    from autonet_tf.configs import RNNSearchConfig, RNNTrainConfig

    cli_flags.reject_other_models("rnn")
    data = cli_flags.text_data_config()
    synthetic = data.dataset == "synthetic"
    names = {n: n for n in cli_flags.RNN_FLAGS + cli_flags.RNN_SHARED + (
        "order", "hessian", "arch_learning_rate", "arch_weight_decay")}
    model_dir = FLAGS.model_dir or os.path.join(
        "runs", "search_rnn_" + (os.path.basename(os.path.normpath(data.dataset)) or "data"))
    search = cli_flags.apply_config_files(cli_flags.rnn_config(
        RNNSearchConfig, data, model_dir, names,
        cli_flags.SYNTHETIC_SEARCH_PRESET if synthetic else None))
    if not FLAGS.retrain:
        return search, None
    train_names = {n: "train_" + n for n in ("epochs", "batch_size", "learning_rate",
                                              "weight_decay", "grad_clip")}
    train_names.update(emsize="train_nhid", nhid="train_nhid")
    train = cli_flags.rnn_config(
        RNNTrainConfig, search.data, os.path.join(model_dir, "train"), train_names,
        cli_flags.SYNTHETIC_TRAIN_PRESET if synthetic else None,
        genotype=os.path.join(model_dir, "genotype.json"), seed=search.seed)
    return search, train


def build_cnn_configs():
    """(SearchConfig, TrainConfig or None) from the flags of --model=cnn."""
    cli_flags.reject_other_models("cnn")
    config = build_config()
    if not FLAGS.retrain:
        return config, None
    # validate every flag before any work starts
    return config, cli_flags.train_config(
        "train_", config.data, os.path.join(config.model_dir, "train"),
        os.path.join(config.model_dir, "genotype.json"), config.seed)


def main(argv):
    """Searches, then (with --retrain) trains the result from scratch.

    One strategy for both stages: two MirroredStrategy objects in one process
    mix up their collective-op keys (synchronised BatchNorm fails).
    """
    del argv
    cli_flags.read_config_files()
    rnn = FLAGS.model == "rnn"
    config, train_config = build_rnn_configs() if rnn else build_cnn_configs()
    cli_flags.check_before_tensorflow(config)
    cli.start_tensorflow()
    from autonet_tf import tasks
    from autonet_tf.distribute.strategy import strategy_for

    strategy = strategy_for(config)
    search = tasks.RNNSearchTask(config) if rnn else tasks.CNNSearchTask(config)
    result = tasks.run(search, strategy)
    print(f"Final genotype: {result.genotype}", flush=True)
    print(f"Run directory: {result.model_dir}", flush=True)
    if train_config is None:
        return
    print(f"Training the discovered {'cell' if rnn else 'network'} from scratch "
          f"({train_config.epochs} epochs)", flush=True)
    train = (tasks.RNNTrainTask if rnn else tasks.CNNTrainTask)(
        train_config, genotype=result.genotype)
    print(tasks.run(train, strategy).summary())


def run() -> None:
    """The console entry point ``autonet-search``."""
    cli.run(main, flags_first=True)


if __name__ == "__main__":
    run()
