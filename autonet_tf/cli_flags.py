"""absl flag groups shared by the programs in ``bin/`` and their config builders.

Each ``define_*`` function defines one group of flags (call it once per
program); the matching builder turns the parsed flags into a config object.
Flags a program does not define are never read.
"""

from __future__ import annotations

import contextlib
import os

from absl import flags

from autonet_tf import cli
from autonet_tf.configs import STRATEGIES, DataConfig, TrainConfig
from autonet_tf.errors import UserInputError

FLAGS = flags.FLAGS


# flag name -> the one --model it applies to ('cnn' or 'rnn'); flags not
# here apply to both
_MODEL_OF: dict[str, str] = {}


@contextlib.contextmanager
def only_for(model: str):
    """The flags defined inside the block apply to ``--model=<model>`` alone;
    :func:`reject_other_models` refuses them under the other model."""
    before = set(FLAGS)
    yield
    for name in FLAGS:
        if name not in before and len(name) > 1:  # not the one-letter aliases
            _MODEL_OF.setdefault(name, model)


def reject_other_models(model: str) -> None:
    """Fails (one line) when the user set a flag that ``--model=<model>`` does not use."""
    for name, owner in _MODEL_OF.items():
        if owner != model and name in FLAGS and FLAGS[name].present:
            raise UserInputError(f"--{name} does not apply to --model={model}")


def _grouped(title: str):
    """Decorator: the flags a ``define_*`` function defines form one ``--help`` group."""
    def wrap(define):
        def defined(*args, **kwargs):
            with cli.flag_group(title):
                return define(*args, **kwargs)
        defined.__name__, defined.__doc__ = define.__name__, define.__doc__
        return defined
    return wrap

# Network-training flags that search.py also has for the search itself;
# there they carry the prefix "train_".
TRAIN_PREFIXED = ("epochs", "batch_size", "layers", "init_channels", "learning_rate",
                  "learning_rate_min", "momentum", "weight_decay", "grad_clip")

# The embedded dataset's quick search preset for flags the user did not set.
# The paper's Adam rate 3e-4 barely moves the alphas in the ~110 architecture
# steps of this preset (softmaxed alphas within 0.124-0.126 after 10 epochs).
# Measured on digits (2 warm-up epochs, 8 searching): mean best-vs-second
# margin of the normal cell 0.005 at 3e-3, 0.017 at 1e-2, 0.04-0.08 at 5e-2
# (where the normal cell drifted to pooling, the known DARTS collapse).
DIGITS_SEARCH_PRESET = {"epochs": 10, "layers": 5, "init_channels": 8, "arch_learning_rate": 1e-2}

# Quick settings for the embedded 8x8 digits, for flags the user did not set
# (a 20-cell, 36-channel network and 16-pixel cutout make no sense on 8x8).
# Drop path is off: on this 8-cell network and 1,438 training images it cost
# accuracy (30 epochs, same genotype: 99.4 % test accuracy without, 75 % with
# the paper's 0.2; training accuracy fell as the probability rose). 10 epochs:
# with 30, test accuracy reached its final 99.4 % at epoch 11 and stayed there;
# the README search's 309,914-parameter genotype scored 97.49 / 98.89 % (seeds
# 1 / 2) after 10 epochs and 97.77 / 98.89 % after 15, one test image apart.
DIGITS_TRAIN_PRESET = {"epochs": 10, "batch_size": 64, "layers": 8, "init_channels": 16,
                       "cutout_length": 0, "drop_path_prob": 0.0}

# train_imagenet.py's recipe for --network=imagenet, for flags the user did not
# set: 14 cells, C=48, batch 128, SGD lr 0.1 decayed x0.97 per epoch, weight
# decay 3e-5, label smoothing 0.1, no drop path or cutout, 250 epochs (the
# 224x224 random resized crops, flips and colour jitter come with the network).
IMAGENET_TRAIN_PRESET = {"epochs": 250, "batch_size": 128, "layers": 14, "init_channels": 48,
                         "learning_rate": 0.1, "weight_decay": 3e-5, "lr_schedule": "exponential",
                         "lr_decay": 0.97, "label_smoothing": 0.1, "drop_path_prob": 0.0,
                         "cutout_length": 0}


@_grouped("Data")
def define_data_flags() -> None:
    flags.DEFINE_string(
        "dataset", "digits", "'digits' (embedded), a tfds name (cifar10, cifar100, mnist, "
        "fashion_mnist, svhn_cropped), an .npz file (MedMNIST layout) or a folder of class "
        "sub-folders. With --model=rnn: 'synthetic' (generated, the default), 'ptb' (with "
        "--data_dir) or a directory with train.txt, valid.txt and test.txt.")
    flags.DEFINE_string("data_dir", None,
                        "tfds data directory (default: tfds' own, ~/tensorflow_datasets); with "
                        "--dataset=ptb the Penn Treebank folder.")
    flags.DEFINE_bool("download", True, "Download and prepare a tfds dataset that is not in "
                      "--data_dir yet (--nodownload: fail instead).")
    with only_for("cnn"):
        flags.DEFINE_enum("augment", "auto", ["auto", "on", "off"],
                          "Random crop + flip (auto: on for CIFAR).")
        flags.DEFINE_integer("image_size", None, "Resize image-folder datasets to this size.")
    flags.DEFINE_enum("stream", "auto", ["auto", "on", "off"],
                      "Image folders: read and decode the files batch by batch in the input "
                      "pipeline (on), decode them all into memory first (off), or stream "
                      "folders of more than 1 GiB of decoded images (auto).")


def data_config() -> DataConfig:
    return DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, augment=FLAGS.augment,
                      image_size=FLAGS.image_size, download=FLAGS.download,
                      stream=FLAGS.stream)


def dataset_stem() -> str:
    """A short name of --dataset for default run directories."""
    return os.path.splitext(os.path.basename(os.path.normpath(FLAGS.dataset)))[0] or "data"


RUNTIME = ("strategy", "num_devices", "tpu", "jit_compile", "max_steps_per_epoch",
           "checkpoint_every", "checkpoint_secs", "progress", "mixed_precision", "steps_per_loop")


@_grouped("Devices and strategy")
def define_strategy_flags() -> None:
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_integer("num_devices", None, "Replicas for --strategy=mirrored (without GPUs "
                         "the CPU is split into this many logical devices).")
    flags.DEFINE_string("tpu", None, "TPU address for --strategy=tpu.")
    flags.DEFINE_integer("intra_op_threads", None, "Threads one TensorFlow kernel may use "
                         "(0: TensorFlow's choice). Unset on a CPU-only host of at most 8 "
                         "cores: 1, with --inter_op_threads = the cores (the supernet's many "
                         "small kernels run side by side: 1.9x faster digits search steps, 1.2x "
                         "on CIFAR-10, on 2 cores); "
                         "elsewhere TensorFlow's choice.")
    flags.DEFINE_integer("inter_op_threads", None, "TensorFlow kernels run at once (0: "
                         "TensorFlow's choice; unset: see --intra_op_threads).")


@_grouped("Runtime")
def define_runtime_flags(checkpoint_every: int = 200) -> None:
    define_strategy_flags()
    flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
    flags.DEFINE_enum("mixed_precision", "off", ["off", "mixed_float16", "mixed_bfloat16"],
                      "16-bit compute with float32 variables; alphas, softmax and losses "
                      "stay float32. For GPUs and TPUs: on CPUs the CNN search and training "
                      "run slower in 16 bit (bfloat16 depthwise-convolution gradients).")
    flags.DEFINE_integer("max_steps_per_epoch", None, "Cap on steps per epoch (quick runs).")
    flags.DEFINE_integer("checkpoint_every", checkpoint_every, "Steps between mid-epoch "
                         "checkpoints (always written).")
    flags.DEFINE_float("checkpoint_secs", 30.0, "An epoch's end is checkpointed when the last "
                       "checkpoint is at least this many seconds old, the last epoch's always "
                       "(a kill loses at most this much plus one epoch; 0: every epoch).")
    flags.DEFINE_bool("progress", True, "Show a progress bar per epoch.")
    flags.DEFINE_integer("steps_per_loop", 1, "Training steps per tf.function call (an "
                         "in-graph loop; metrics reach the host once per call). CNN only.")


@_grouped("Config file")
def define_config_file_flags() -> None:
    flags.DEFINE_string(
        "config_file", None, "YAML or JSON file of config keys (a run's config.json works as "
        "it is; nested keys as in config.json, e.g. data: {dataset: cifar10}). Its values "
        "replace the defaults and presets; flags given on the command line outrank it. "
        "model_dir is never taken from it.")
    flags.DEFINE_string(
        "params_override", None, "Comma-separated key=value pairs onto the config, dotted "
        "for nested keys (epochs=5,data.dataset=cifar10); outranks flags and --config_file.")


#: what read_config_files() read: the file's values and the overrides
_CONFIG_VALUES = {"file": {}, "overrides": {}}


def read_config_files() -> None:
    """Reads --config_file and --params_override before any config is built.

    Their values become the values of the flags of the same names (nested
    keys by their last part: data.dataset -> --dataset) that were not given,
    so the choice of presets and of --model=rnn (a file with ``nhid``) sees
    them; :func:`apply_config_files` then sets every field.
    """
    from autonet_tf import config_files

    from_file = config_files.file_values(FLAGS.config_file)
    overrides = config_files.parse_overrides(FLAGS.params_override)
    _CONFIG_VALUES.update(file=from_file, overrides=overrides)
    if "model" in FLAGS and not FLAGS["model"].present and "nhid" in from_file:
        FLAGS["model"].value = "rnn"
        cli.SEEDED.add("model")
    for values, outranks_flags in ((from_file, False), (overrides, True)):
        for path, value in config_files.flat(values).items():
            name = path.split(".")[-1]
            if name in FLAGS and name not in ("model_dir", "model") and (
                    outranks_flags or not FLAGS[name].present):
                FLAGS[name].value = value
                cli.SEEDED.add(name)


def apply_config_files(config):
    """``config`` with --config_file's values (where no flag was given) and
    --params_override applied, validated."""
    from autonet_tf import config_files

    def flag_given(path: str) -> bool:
        name = path.split(".")[-1]
        return name in FLAGS and FLAGS[name].present

    return config_files.apply(config, _CONFIG_VALUES["file"], _CONFIG_VALUES["overrides"],
                              FLAGS.config_file or "", flag_given)


def runtime_values() -> dict:
    return {name: FLAGS[name].value for name in RUNTIME}


@_grouped("Training the network")
def define_train_flags(prefix: str = "") -> None:
    """Flags of :class:`TrainConfig`; ``prefix`` goes on the names in TRAIN_PREFIXED."""
    d = TrainConfig()
    p = prefix
    flags.DEFINE_integer(p + "epochs", d.epochs, "Training epochs of the discovered network.")
    flags.DEFINE_integer(p + "batch_size", d.batch_size, "Global training batch size.")
    flags.DEFINE_float(p + "learning_rate", d.learning_rate, "Initial learning rate (SGD).")
    flags.DEFINE_float(p + "weight_decay", d.weight_decay, "L2 weight decay.")
    flags.DEFINE_float(p + "grad_clip", d.grad_clip, "Global gradient-norm clip.")
    with only_for("cnn"):
        flags.DEFINE_integer(p + "layers", d.layers, "Cells of the trained network.")
        flags.DEFINE_integer(p + "init_channels", d.init_channels,
                             "Channels of the first cells of the trained network.")
        flags.DEFINE_float(p + "learning_rate_min", d.learning_rate_min,
                           "Final cosine learning rate.")
        flags.DEFINE_float(p + "momentum", d.momentum, "SGD momentum.")
        flags.DEFINE_enum("network", d.network, ["auto", "cifar", "imagenet"],
                          "Network body: CIFAR stem, ImageNet two-stage stem (224x224), or auto "
                          "(ImageNet stem from 128 pixels up).")
        flags.DEFINE_bool("auxiliary", d.auxiliary, "Auxiliary head after cell 2*layers//3.")
        flags.DEFINE_float("auxiliary_weight", d.auxiliary_weight,
                           "Weight of the auxiliary loss.")
        flags.DEFINE_float("drop_path_prob", d.drop_path_prob,
                           "Drop-path probability, reached linearly at the last epoch.")
        flags.DEFINE_integer("cutout_length", d.cutout_length, "Cutout square side (0 = off).")
        flags.DEFINE_enum("lr_schedule", d.lr_schedule, ["cosine", "exponential"],
                          "Learning-rate schedule: cosine to --learning_rate_min, or x "
                          "--lr_decay per epoch (the ImageNet recipe).")
        flags.DEFINE_float("lr_decay", d.lr_decay,
                           "Per-epoch factor of --lr_schedule=exponential.")
        flags.DEFINE_float("label_smoothing", d.label_smoothing,
                           "Label smoothing of the training loss (0: off).")
        flags.DEFINE_bool("tflite", False, "Also export a .tflite file.")


def train_config(prefix: str, data: DataConfig, model_dir: str, genotype: str,
                 seed: int, **overrides) -> TrainConfig:
    """A validated TrainConfig from the flags of ``define_train_flags(prefix)``."""
    values = {name: FLAGS[prefix + name].value for name in TRAIN_PREFIXED}
    for name in ("network", "auxiliary", "auxiliary_weight", "drop_path_prob",
                 "cutout_length", "tflite", "lr_schedule", "lr_decay", "label_smoothing"):
        values[name] = FLAGS[name].value
    preset = (DIGITS_TRAIN_PRESET if data.dataset == "digits" else
              IMAGENET_TRAIN_PRESET if values["network"] == "imagenet" else {})
    unset = cli.unset_flags([(prefix + n) if n in TRAIN_PREFIXED else n for n in preset])
    for name in preset:
        if ((prefix + name) if name in TRAIN_PREFIXED else name) in unset:
            values[name] = preset[name]
    values.update(runtime_values())
    values.update(overrides)
    config = TrainConfig(data=data, model_dir=model_dir, genotype=genotype, seed=seed,
                         **values)
    try:
        config.validate()
    except UserInputError as e:
        message = str(e)
        if prefix:  # name the flag the user typed
            for name in TRAIN_PREFIXED:
                message = message.replace(f"--{name}=", f"--{prefix}{name}=")
                message = message.replace(f"(--{name})", f"(--{prefix}{name})")
        raise UserInputError(message) from None
    return config


# --------------------------------------------------------------------------- RNN
# Flags of --model=rnn. Flags both models share (epochs, batch_size,
# learning_rate, ...) take the RNN reference defaults when --model=rnn and the
# user did not set them.
RNN_FLAGS = ("bptt", "emsize", "nhid", "eval_batch_size", "dropout", "dropouth", "dropoutx",
             "dropouti", "dropoute", "tar_beta", "variable_bptt", "max_seq_len_delta")
RNN_SHARED = ("epochs", "batch_size", "learning_rate", "weight_decay", "grad_clip", "seed")

# Quick settings for the generated 'synthetic' corpus (24k tokens, 202 words)
# for flags the user did not set: the paper's 300/850-unit cells and 0.75
# dropouts are sized for PTB's 930k tokens.
SYNTHETIC_COMMON = {"batch_size": 16, "bptt": 20, "emsize": 64, "nhid": 64,
                    "dropout": 0.2, "dropoutx": 0.2, "dropouth": 0.1, "dropouti": 0.1,
                    "dropoute": 0.0}
SYNTHETIC_SEARCH_PRESET = {**SYNTHETIC_COMMON, "epochs": 10, "learning_rate": 5.0}
SYNTHETIC_TRAIN_PRESET = {**SYNTHETIC_COMMON, "epochs": 10}


@_grouped("Recurrent model (--model=rnn)")
def define_rnn_flags(train: bool) -> None:
    """Flags of the recurrent search (``train=False``) or training (``train=True``)."""
    from autonet_tf.configs import RNNTrainConfig

    d = RNNTrainConfig()
    with only_for("rnn"):
        flags.DEFINE_integer("bptt", d.bptt, "RNN: tokens per truncated-BPTT window.")
        flags.DEFINE_integer("emsize", None, "RNN: embedding size (= --nhid; default 300 for "
                             "search, 850 for training).")
        flags.DEFINE_integer("nhid", None, "RNN: hidden size (default 300 for search, 850 for "
                             "training).")
        flags.DEFINE_integer("eval_batch_size", d.eval_batch_size,
                             "RNN: rows of the validation/test streams.")
        flags.DEFINE_float("dropout", d.dropout, "RNN: dropout of the cell output.")
        flags.DEFINE_float("dropouth", d.dropouth, "RNN: dropout of the hidden state.")
        flags.DEFINE_float("dropoutx", d.dropoutx, "RNN: dropout of the cell input.")
        flags.DEFINE_float("dropouti", d.dropouti, "RNN: dropout of the embedded input.")
        flags.DEFINE_float("dropoute", None, "RNN: dropout of whole embedding rows (default 0 "
                           "for search, 0.1 for training).")
        flags.DEFINE_float("tar_beta", d.tar_beta, "RNN: temporal activation regularisation.")
        flags.DEFINE_bool("variable_bptt", d.variable_bptt,
                          "RNN: draw window lengths around --bptt as the reference does.")
        flags.DEFINE_integer("max_seq_len_delta", d.max_seq_len_delta,
                             "RNN: longest window = bptt + this.")
        if train:
            flags.DEFINE_integer("nonmono", d.nonmono, "RNN: switch to averaged SGD when the "
                                 "validation loss is worse than the best of all epochs but the "
                                 "last N.")


def text_data_config():
    from autonet_tf.configs import TextDataConfig

    dataset = FLAGS.dataset if cli.given("dataset") else "synthetic"
    return TextDataConfig(dataset=dataset, data_dir=FLAGS.data_dir)


def rnn_values(cls, flag_names: dict, preset: dict | None) -> dict:
    """Field values of ``cls`` from flags the user set, else ``preset``, else defaults.

    Args:
      flag_names: config field -> flag name.
    """
    defaults = cls()
    values = {}
    for name, flag in flag_names.items():
        if cli.given(flag):
            values[name] = FLAGS[flag].value
        elif preset and name in preset:
            values[name] = preset[name]
        else:
            values[name] = getattr(defaults, name)
    if "emsize" in values and "nhid" in values:  # one of them set: the other follows
        if cli.given(flag_names["nhid"]) and not cli.given(flag_names["emsize"]):
            values["emsize"] = values["nhid"]
        if cli.given(flag_names["emsize"]) and not cli.given(flag_names["nhid"]):
            values["nhid"] = values["emsize"]
    return values


def rnn_config(cls, data, model_dir: str, flag_names: dict, preset: dict | None,
               **overrides):
    """A validated RNN config (``RNNSearchConfig`` or ``RNNTrainConfig``) from flags."""
    values = rnn_values(cls, flag_names, preset)
    values.update(runtime_values())
    values.update(overrides)
    config = cls(data=data, model_dir=model_dir, **values)
    try:
        config.validate()
    except UserInputError as e:
        message = str(e)
        for name, flag in flag_names.items():  # name the flag the user typed
            if name != flag:
                message = message.replace(f"--{name}=", f"--{flag}=")
        raise UserInputError(message) from None
    return config


def check_before_tensorflow(config, load_genotype=None):
    """The first checks of ``tasks.run`` that need no TensorFlow, made by the
    programs before it starts (about 5 s), so that such bad input is answered
    at once: the genotype to train loads (``load_genotype``, for training),
    the run directory can be created, and an image dataset is a known name,
    an existing .npz file or a folder. ``tasks.run`` checks the last two again.

    Returns the loaded genotype (None without ``load_genotype``), for the
    training task's ``genotype`` argument."""
    from autonet_tf.data import images
    from autonet_tf.io import run_dir

    genotype = load_genotype(config.genotype) if load_genotype is not None else None
    run_dir.check_writable_parent(config.model_dir)
    if isinstance(config.data, DataConfig):
        images.check_source(config.data.dataset)
    return genotype
