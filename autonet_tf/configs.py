"""Typed, validated configuration objects.

The programs in ``bin/`` turn absl flags into these dataclasses once,
validate them, and write them as ``config.json`` into the run directory. The
library only ever sees these objects. Every default that comes from the DARTS
paper or its reference code says so in a comment.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from autonet_tf.errors import UserInputError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
#: second order's Hessian-vector product (training.architect.Architect)
#: datasets on which --collapse_guard=auto leaves the guard off: the paper's
#: cifar10 search runs as published; the embedded digits demo is too short for it
GUARD_OFF_DATASETS = ("cifar10", "digits")
HESSIANS = ("finite_difference", "exact")
#: how the supernet's edges are traced (models.cnn_search.SearchNetwork)
TRACE_SHARING_MODES = ("batched", "inline", "call", "off")
#: the choices of the config and --trace_sharing: 'auto' picks a mode per run
#: (models.cnn_search.pick_trace_sharing)
TRACE_SHARING = ("auto",) + TRACE_SHARING_MODES


def _check(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise UserInputError(f"--{name}={value!r} is invalid: expected {expected}")


def _positive(name, value, integer=True):
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    _check(ok and value > 0, name, value, f"{kind} > 0")


def _non_negative(name, value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    _check(ok and value >= 0, name, value, "a number >= 0")


@dataclasses.dataclass
class DataConfig:
    """Where the images come from.

    dataset: 'digits' (embedded, scikit-learn 8x8), a tfds name (cifar10,
      cifar100, mnist, fashion_mnist, svhn_cropped), a path to an ``.npz``
      file in the MedMNIST layout, or a folder of class sub-folders of images.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = True  # a tfds dataset not prepared in data_dir is downloaded
    # Random crop (padding H/8, i.e. 4 for 32x32) + horizontal flip, as the
    # reference's CIFAR transforms. 'auto' turns it on for cifar10/cifar100.
    augment: str = "auto"
    image_size: int | None = None  # resize image folders to this size
    test_fraction: float = 0.2  # held-out test split where a dataset has none
    # Image folders: 'on' reads and decodes the files batch by batch in the
    # tf.data pipeline (memory independent of the dataset's size), 'off'
    # decodes them all into memory first, 'auto' streams folders whose
    # decoded images would take more than STREAM_ABOVE_BYTES.
    stream: str = "auto"

    def validate(self) -> None:
        _check(isinstance(self.dataset, str) and self.dataset.strip() != "", "dataset",
               self.dataset, "a dataset name or path")
        _check(self.augment in ("auto", "on", "off"), "augment", self.augment,
               "one of auto, on, off")
        _check(self.stream in ("auto", "on", "off"), "stream", self.stream,
               "one of auto, on, off")
        if self.image_size is not None:
            _positive("image_size", self.image_size)
        _check(isinstance(self.test_fraction, float) and 0 < self.test_fraction < 1,
               "test_fraction", self.test_fraction, "a fraction in (0, 1)")


@dataclasses.dataclass
class RuntimeConfig:
    """Where and how a run executes; shared by every run config."""

    strategy: str = "default"
    num_devices: int | None = None  # replicas for 'mirrored' (None: all visible)
    tpu: str | None = None
    jit_compile: bool = False
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints
    # An epoch's end is checkpointed when the last checkpoint is at least this
    # old (and always after the last epoch): short epochs do not pay a save each.
    checkpoint_secs: float = 30.0
    max_steps_per_epoch: int | None = None  # cap (for quick runs)
    log_every: int = 10  # steps between TensorBoard scalar writes
    progress: bool = True
    mixed_precision: str = "off"  # 'mixed_float16' or 'mixed_bfloat16': 16-bit compute
    # Training steps per tf.function call (an in-graph loop; the host reads
    # the metrics once per call). Image trainers only: the recurrent ones
    # choose each window's length on the host.
    steps_per_loop: int = 1


def _validate_runtime(config) -> None:
    """Checks the strategy, device, step-cap and seed fields every run config has."""
    _check(config.strategy in STRATEGIES, "strategy", config.strategy,
           f"one of {', '.join(STRATEGIES)}")
    _check(config.mixed_precision in ("off", "mixed_float16", "mixed_bfloat16"),
           "mixed_precision", config.mixed_precision, "off, mixed_float16 or mixed_bfloat16")
    if config.num_devices is not None:
        _positive("num_devices", config.num_devices)
    if config.max_steps_per_epoch is not None:
        _positive("max_steps_per_epoch", config.max_steps_per_epoch)
    _positive("steps_per_loop", config.steps_per_loop)
    _non_negative("checkpoint_secs", config.checkpoint_secs)
    _check(isinstance(config.seed, int) and config.seed >= 0, "seed", config.seed,
           "an integer >= 0")


def _validate_architect(config) -> None:
    """Checks the architecture-gradient fields both search configs have."""
    _check(config.order in ("first", "second"), "order", config.order, "'first' or 'second'")
    _check(config.hessian in HESSIANS, "hessian", config.hessian, " or ".join(HESSIANS))
    for name in ("arch_learning_rate", "unrolled_epsilon"):
        _positive(name, getattr(config, name), integer=False)
    for name in ("arch_weight_decay", "alpha_init_scale"):
        _non_negative(name, getattr(config, name))
    for name in ("arch_beta_1", "arch_beta_2"):
        value = getattr(config, name)
        _check(isinstance(value, (int, float)) and 0 <= value < 1, name, value,
               "a number in [0, 1)")


def _to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _from_dict(cls, data: dict):
    data = dict(data)
    data["data"] = DataConfig(**data.get("data", {}))
    return cls(**data)


@dataclasses.dataclass
class SearchConfig(RuntimeConfig):
    """DARTS CNN search settings; defaults are the reference ``train_search.py``."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model_dir: str = "runs/search"
    order: str = "first"  # 'first' or 'second' order architecture gradient
    epochs: int = 50  # train_search.py --epochs
    batch_size: int = 64  # global batch (train_search.py --batch_size)
    layers: int = 8  # train_search.py --layers
    init_channels: int = 16  # train_search.py --init_channels
    steps: int = 4  # intermediate nodes per cell (model_search.py)
    multiplier: int = 4  # concatenated nodes (model_search.py)
    stem_multiplier: int = 3  # model_search.py
    train_portion: float = 0.5  # train_search.py --train_portion
    learning_rate: float = 0.025  # train_search.py --learning_rate
    learning_rate_min: float = 0.001  # train_search.py --learning_rate_min
    momentum: float = 0.9  # train_search.py --momentum
    weight_decay: float = 3e-4  # train_search.py --weight_decay
    grad_clip: float = 5.0  # train_search.py --grad_clip
    arch_learning_rate: float = 3e-4  # train_search.py --arch_learning_rate
    arch_beta_1: float = 0.5  # architect.py Adam betas
    arch_beta_2: float = 0.999
    arch_weight_decay: float = 1e-3  # train_search.py --arch_weight_decay
    # Epochs that train only the weights before the alphas move (0 = the
    # reference; later DARTS variants such as PC-DARTS warm up for 15).
    arch_warmup_epochs: int = 0
    # At most this many skip connections in the derived normal cell (P-DARTS
    # uses 2 against the collapse to skips); None: no cap, the reference.
    max_skip: int | None = None
    alpha_init_scale: float = 1e-3  # model_search.py: 1e-3 * randn
    # 'darts' or 'pc_darts': partial channel connections (1/partial_channels
    # of the channels through each MixedOp, then a channel shuffle) and edge
    # normalisation (betas), PC-DARTS (Xu et al. 2020); K=4 for CIFAR.
    method: str = "darts"
    partial_channels: int = 4
    # Collapse guard (training.collapse_guard): 'auto' is on except on
    # cifar10, where the paper's search runs unchanged, and on the embedded
    # digits demo (its 10 quick epochs are too few for the eigenvalue window,
    # and building the eigenvalue's graph doubled the demo's time); 'off' is
    # the reference.
    collapse_guard: str = "auto"
    guard_max_skip: int = 2  # act at more skip connections in the normal cell
    guard_eigen_growth: float = 1.3  # act when the eigenvalue grows this much
    guard_window: int = 2  # epochs per eigenvalue mean
    unrolled_epsilon: float = 0.01  # architect.py: R = 0.01 / ||v||
    # Second order's Hessian-vector product: the reference's central
    # 'finite_difference' or 'exact' (double backprop, no step size).
    hessian: str = "finite_difference"
    seed: int = 2  # train_search.py --seed
    sync_batchnorm: bool = True  # BN statistics over the global batch
    # 'batched': the edges reading one state run together; 'inline': trace each
    # distinct edge once, inlined; 'call': keep the calls (fastest first step,
    # slower steps); 'off': trace every edge; 'auto': inline or batched by the
    # image size (models.cnn_search.pick_trace_sharing).
    trace_sharing: str = "auto"

    def validate(self) -> None:
        self.data.validate()
        _validate_architect(self)
        _check(self.trace_sharing in TRACE_SHARING, "trace_sharing",
               self.trace_sharing, f"one of {', '.join(TRACE_SHARING)}")
        _check(isinstance(self.arch_warmup_epochs, int) and
               0 <= self.arch_warmup_epochs < max(self.epochs, 1), "arch_warmup_epochs",
               self.arch_warmup_epochs, f"an integer in [0, --epochs) (--epochs={self.epochs})")
        for name in ("max_skip", "guard_max_skip"):
            value = getattr(self, name)
            if value is not None:
                _check(isinstance(value, int) and 0 <= value <= 2 * self.steps, name, value,
                       f"an integer in [0, {2 * self.steps}] (2 edges per node)")
        _check(self.method in ("darts", "pc_darts"), "method", self.method,
               "darts or pc_darts")
        _positive("partial_channels", self.partial_channels)
        if self.pc_darts:
            _check(self.init_channels % self.partial_channels == 0, "partial_channels",
                   self.partial_channels,
                   f"a divisor of --init_channels ({self.init_channels})")
        _check(self.collapse_guard in ("auto", "on", "off"), "collapse_guard",
               self.collapse_guard, "one of auto, on, off")
        _check(isinstance(self.guard_eigen_growth, (int, float))
               and self.guard_eigen_growth > 1, "guard_eigen_growth", self.guard_eigen_growth,
               "a number > 1")
        _positive("guard_window", self.guard_window)
        for name in ("epochs", "batch_size", "layers", "init_channels", "steps",
                     "multiplier", "stem_multiplier", "checkpoint_every", "log_every"):
            _positive(name, getattr(self, name))
        _check(self.multiplier <= self.steps, "multiplier", self.multiplier,
               f"at most --steps ({self.steps})")
        _check(isinstance(self.train_portion, (int, float)) and 0 < self.train_portion < 1,
               "train_portion", self.train_portion, "a fraction in (0, 1)")
        for name in ("learning_rate", "grad_clip"):
            _positive(name, getattr(self, name), integer=False)
        for name in ("learning_rate_min", "momentum", "weight_decay"):
            _non_negative(name, getattr(self, name))
        _check(self.learning_rate_min <= self.learning_rate, "learning_rate_min",
               self.learning_rate_min, f"at most --learning_rate ({self.learning_rate})")
        _validate_runtime(self)

    @property
    def pc_darts(self) -> bool:
        return self.method == "pc_darts"

    @property
    def guard_on(self) -> bool:
        """Whether the collapse guard watches this search ('auto': not on cifar10 or digits)."""
        return self.collapse_guard == "on" or (
            self.collapse_guard == "auto" and self.data.dataset not in GUARD_OFF_DATASETS)

    to_dict = _to_dict
    to_json = _to_json
    from_dict = classmethod(_from_dict)


@dataclasses.dataclass
class TrainConfig(RuntimeConfig):
    """Training a discovered network from scratch; defaults are the reference ``train.py``."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    genotype: str = "DARTS_V2"  # a published name, a genotype JSON file or inline JSON
    model_dir: str = "runs/train"
    network: str = "auto"  # 'cifar', 'imagenet' (224x224 stem) or 'auto' (by input size)
    epochs: int = 600  # train.py --epochs
    batch_size: int = 96  # train.py --batch_size
    layers: int = 20  # train.py --layers
    init_channels: int = 36  # train.py --init_channels
    learning_rate: float = 0.025  # train.py --learning_rate
    learning_rate_min: float = 0.0  # CosineAnnealingLR(eta_min=0)
    momentum: float = 0.9  # train.py --momentum
    weight_decay: float = 3e-4  # train.py --weight_decay
    grad_clip: float = 5.0  # train.py --grad_clip
    auxiliary: bool = True  # the paper's runs use --auxiliary
    auxiliary_weight: float = 0.4  # train.py --auxiliary_weight
    drop_path_prob: float = 0.2  # train.py --drop_path_prob (scaled by epoch / epochs)
    cutout_length: int = 16  # the paper's runs use --cutout (length 16); 0 = off
    # 'cosine' (train.py: CosineAnnealingLR to learning_rate_min) or
    # 'exponential' (train_imagenet.py: StepLR(step 1, gamma=lr_decay)).
    lr_schedule: str = "cosine"
    lr_decay: float = 0.97  # train_imagenet.py --gamma, per epoch
    label_smoothing: float = 0.0  # train_imagenet.py --label_smooth 0.1
    seed: int = 0  # train.py --seed
    sync_batchnorm: bool = True
    export: bool = True  # write export/ (SavedModel + metadata) after training
    tflite: bool = False  # also write export/model.tflite

    def validate(self) -> None:
        self.data.validate()
        _check(isinstance(self.genotype, str) and self.genotype.strip() != "", "genotype",
               self.genotype, "a published name (DARTS_V1, DARTS_V2), a file or JSON")
        _check(self.network in ("auto", "cifar", "imagenet"), "network", self.network,
               "one of auto, cifar, imagenet")
        for name in ("epochs", "batch_size", "layers", "init_channels", "checkpoint_every",
                     "log_every"):
            _positive(name, getattr(self, name))
        _check(self.layers >= 3, "layers", self.layers,
               "at least 3 (cells before, between and after the two reductions)")
        for name in ("learning_rate", "grad_clip"):
            _positive(name, getattr(self, name), integer=False)
        for name in ("learning_rate_min", "momentum", "weight_decay", "auxiliary_weight"):
            _non_negative(name, getattr(self, name))
        _check(self.learning_rate_min <= self.learning_rate, "learning_rate_min",
               self.learning_rate_min, f"at most --learning_rate ({self.learning_rate})")
        _check(isinstance(self.drop_path_prob, (int, float)) and 0 <= self.drop_path_prob < 1,
               "drop_path_prob", self.drop_path_prob, "a number in [0, 1)")
        _check(isinstance(self.cutout_length, int) and self.cutout_length >= 0,
               "cutout_length", self.cutout_length, "an integer >= 0 (0 = off)")
        _check(self.lr_schedule in ("cosine", "exponential"), "lr_schedule",
               self.lr_schedule, "one of cosine, exponential")
        _check(isinstance(self.lr_decay, (int, float)) and 0 < self.lr_decay <= 1,
               "lr_decay", self.lr_decay, "a factor in (0, 1]")
        _check(isinstance(self.label_smoothing, (int, float))
               and 0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing,
               "a number in [0, 1)")
        _validate_runtime(self)

    to_dict = _to_dict
    to_json = _to_json
    from_dict = classmethod(_from_dict)


# --------------------------------------------------------------------------- RNN
@dataclasses.dataclass
class TextDataConfig:
    """Where the corpus comes from.

    dataset: 'synthetic' (generated in memory, offline), 'ptb' (with
      ``data_dir``) or a directory with train.txt, valid.txt and test.txt.
    """

    dataset: str = "synthetic"
    data_dir: str | None = None

    def validate(self) -> None:
        _check(isinstance(self.dataset, str) and self.dataset.strip() != "", "dataset",
               self.dataset, "'synthetic', 'ptb' or a corpus directory")


def _rnn_from_dict(cls, data: dict):
    data = dict(data)
    data["data"] = TextDataConfig(**data.get("data", {}))
    return cls(**data)


def _validate_rnn_common(config) -> None:
    """Checks the fields the recurrent search and training configs share."""
    config.data.validate()
    for name in ("epochs", "batch_size", "eval_batch_size", "bptt", "emsize", "nhid",
                 "checkpoint_every", "log_every"):
        _positive(name, getattr(config, name))
    _check(config.emsize == config.nhid, "emsize", config.emsize,
           f"equal to --nhid ({config.nhid}): the decoder shares the embedding matrix")
    for name in ("learning_rate", "grad_clip"):
        _positive(name, getattr(config, name), integer=False)
    for name in ("weight_decay", "tar_beta"):
        _non_negative(name, getattr(config, name))
    for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
        value = getattr(config, name)
        _check(isinstance(value, (int, float)) and not isinstance(value, bool)
               and 0 <= value < 1, name, value, "a rate in [0, 1)")
    _check(isinstance(config.max_seq_len_delta, int) and config.max_seq_len_delta >= 0,
           "max_seq_len_delta", config.max_seq_len_delta, "an integer >= 0")
    _validate_runtime(config)


@dataclasses.dataclass
class RNNSearchConfig(RuntimeConfig):
    """DARTS recurrent-cell search; defaults are the reference ``rnn/train_search.py``."""

    data: TextDataConfig = dataclasses.field(default_factory=TextDataConfig)
    model_dir: str = "runs/search_rnn"
    order: str = "first"  # --unrolled gives second order
    epochs: int = 50  # --epochs
    batch_size: int = 256  # --batch_size (global)
    eval_batch_size: int = 10  # eval_batch_size
    bptt: int = 35  # --bptt
    variable_bptt: bool = True  # seq_len ~ N(bptt, 5), bptt/2 with p 0.05
    max_seq_len_delta: int = 20  # --max_seq_len_delta
    emsize: int = 300  # --emsize
    nhid: int = 300  # --nhid
    steps: int = 8  # STEPS
    learning_rate: float = 20.0  # --lr (SGD)
    grad_clip: float = 0.25  # --clip
    weight_decay: float = 5e-7  # --wdecay
    dropout: float = 0.75  # --dropout (cell output)
    dropouth: float = 0.25  # --dropouth (hidden state)
    dropoutx: float = 0.75  # --dropoutx (cell input)
    dropouti: float = 0.2  # --dropouti (embedding output)
    dropoute: float = 0.0  # --dropoute (embedding rows)
    tar_beta: float = 1e-3  # --beta (temporal activation regularisation)
    arch_learning_rate: float = 3e-3  # --arch_lr
    arch_weight_decay: float = 1e-3  # --arch_wdecay
    arch_beta_1: float = 0.9  # torch Adam defaults in rnn/architect.py
    arch_beta_2: float = 0.999
    alpha_init_scale: float = 1e-3  # 1e-3 * randn
    unrolled_epsilon: float = 0.01  # R = 0.01 / ||v||
    hessian: str = "finite_difference"  # or 'exact' (see SearchConfig)
    seed: int = 3  # --seed

    def validate(self) -> None:
        _validate_architect(self)
        _positive("steps", self.steps)
        _validate_rnn_common(self)

    to_dict = _to_dict
    to_json = _to_json
    from_dict = classmethod(_rnn_from_dict)


@dataclasses.dataclass
class RNNTrainConfig(RuntimeConfig):
    """Training a recurrent cell from scratch; defaults are the reference ``rnn/train.py``."""

    data: TextDataConfig = dataclasses.field(default_factory=TextDataConfig)
    genotype: str = "DARTS_V2"
    model_dir: str = "runs/train_rnn"
    epochs: int = 8000  # --epochs (ASGD takes over long before)
    batch_size: int = 64  # --batch_size
    eval_batch_size: int = 10
    bptt: int = 35
    variable_bptt: bool = True
    max_seq_len_delta: int = 20
    emsize: int = 850  # --emsize
    nhid: int = 850  # --nhid
    learning_rate: float = 20.0  # --lr
    grad_clip: float = 0.25  # --clip
    weight_decay: float = 8e-7  # --wdecay
    dropout: float = 0.75
    dropouth: float = 0.25
    dropoutx: float = 0.75
    dropouti: float = 0.2
    dropoute: float = 0.1
    tar_beta: float = 1e-3
    nonmono: int = 5  # switch to averaged SGD when val loss > min of all but the last 5
    seed: int = 1267  # --seed
    export: bool = True

    def validate(self) -> None:
        _check(isinstance(self.genotype, str) and self.genotype.strip() != "", "genotype",
               self.genotype, "a published name (DARTS_V1, DARTS_V2), a file or JSON")
        _positive("nonmono", self.nonmono)
        _validate_rnn_common(self)

    to_dict = _to_dict
    to_json = _to_json
    from_dict = classmethod(_rnn_from_dict)
