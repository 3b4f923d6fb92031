"""What a trial trains, given its hyperparameter values.

A trial function is ``fn(values: dict, context: TrialContext) -> dict`` and
returns its final metrics (the objective among them); it may call
``context.report(epoch, metrics)`` after each epoch, which the chief prints
and records. ``report`` returns True when the search wants the trial to stop
early (median stopping): the trial should then end as if its last epoch had
been its final one (Keras trials do). Built in (``trial:`` in the space file or ``--trial``):

* ``mlp``: an MLP on tabular data (iris from scikit-learn by default);
  parameters ``layers``, ``units``, ``dropout``, ``learning_rate``,
  ``batch_size`` (all optional).
* ``simple_cnn``: the random-search NAS baseline (a simple CNN space)
  (``conv_layers`` blocks of Conv 3x3/32/ReLU/MaxPool 2, optional
  ``dropout``, Dense(``numhidden``), Dense(classes)) on any image dataset the
  project reads; 70/30 train/validation split of the training images.
* ``darts_search``: a short DARTS search; objective: validation loss of the
  supernet; parameters are :class:`SearchConfig` fields.
* ``train_genotype``: training a genotype (parameter ``genotype``, default
  DARTS_V2) with :class:`TrainConfig` fields as parameters.

Users plug in their own model with :func:`keras_trial` (``build(values) ->
compiled keras.Model``) or any function with the signature above.

Every trial runs under ``context.strategy`` (a ``tf.distribute`` strategy;
TensorFlow's default one unless ``--strategy`` says otherwise): Keras models
are built, compiled and fitted in its scope, the project's own search and
training receive it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import keras
import numpy as np

from autonet_tf.errors import UserInputError
from autonet_tf.seeding import seeded
from autonet_tf.tuning.checks import check_trial_name, config_fields


@dataclasses.dataclass
class TrialContext:
    """What a trial gets besides its hyperparameters."""

    trial_id: str
    directory: str  # a private folder for the trial's files
    dataset: str | None  # --dataset (None: the trial's default)
    epochs: int  # --epochs_per_trial
    seed: int
    report: Callable[[int, dict], bool] = lambda epoch, metrics: False
    strategy: object = None  # tf.distribute.Strategy (None: TensorFlow's default)

    def scope(self):
        """The strategy's scope: build and compile Keras models inside it."""
        import tensorflow as tf

        return (self.strategy or tf.distribute.get_strategy()).scope()


class _Reporter(keras.callbacks.Callback):
    def __init__(self, context: TrialContext):
        super().__init__()
        self.context = context

    def on_epoch_end(self, epoch, logs=None):
        if self.context.report(epoch + 1, {k: float(v) for k, v in (logs or {}).items()}):
            self.model.stop_training = True  # stopped early: this epoch is the last


def _split(x, y, fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(round(len(x) * (1 - fraction)))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def fit_and_score(model: keras.Model, x, y, context: TrialContext, batch_size: int,
                  validation_fraction: float = 0.3) -> dict:
    """Fits a compiled classifier on a seeded train/validation split; final metrics."""
    x_train, y_train, x_val, y_val = _split(x, y, validation_fraction, context.seed)
    with context.scope():
        history = model.fit(x_train, y_train, validation_data=(x_val, y_val),
                            epochs=context.epochs, batch_size=batch_size, verbose=0,
                            callbacks=[_Reporter(context)])
    final = {k: float(v[-1]) for k, v in history.history.items()}
    return {"val_loss": final["val_loss"], "val_accuracy": final.get("val_accuracy", math.nan),
            "loss": final["loss"], "accuracy": final.get("accuracy", math.nan)}


def keras_trial(build: Callable[[dict], keras.Model], x, y, batch_size: int = 32,
                validation_fraction: float = 0.3):
    """A trial function from ``build(values) -> compiled keras.Model`` and arrays."""

    def trial(values: dict, context: TrialContext) -> dict:
        with seeded(context.seed):  # the trial's weights, dropout and shuffling
            with context.scope():
                model = build(values)
            return fit_and_score(model, x, y, context,
                                 int(values.get("batch_size", batch_size)), validation_fraction)

    return trial


def _tabular(dataset: str | None):
    from sklearn import datasets as skdata

    name = dataset or "iris"
    loaders = {"iris": skdata.load_iris, "wine": skdata.load_wine,
               "breast_cancer": skdata.load_breast_cancer, "digits": skdata.load_digits}
    if name in loaders:
        x, y = loaders[name](return_X_y=True)
    elif name.endswith(".csv") and os.path.isfile(name):
        try:
            data = np.loadtxt(name, delimiter=",", skiprows=1)
        except ValueError as e:
            raise UserInputError(f"--dataset={name!r}: not a numeric CSV ({e})") from None
        x, y = data[:, :-1], data[:, -1]
    else:
        raise UserInputError(f"--dataset={name!r} is not a tabular dataset for the mlp trial: "
                             f"expected {', '.join(loaders)} or a numeric .csv file "
                             f"(label in the last column)")
    x = np.asarray(x, np.float32)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    _, labels = np.unique(y, return_inverse=True)
    return x, labels.astype(np.int32)


def mlp_trial(values: dict, context: TrialContext) -> dict:
    x, y = _tabular(context.dataset)

    def build(values):
        model = keras.Sequential([keras.Input((x.shape[1],))])
        for _ in range(int(values.get("layers", 1))):
            model.add(keras.layers.Dense(int(values.get("units", 32)), activation="relu"))
            if values.get("dropout", 0.0):
                model.add(keras.layers.Dropout(float(values["dropout"])))
        model.add(keras.layers.Dense(int(y.max()) + 1))
        model.compile(keras.optimizers.Adam(float(values.get("learning_rate", 1e-2))),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    return keras_trial(build, x, y, batch_size=16)(values, context)


def simple_cnn_trial(values: dict, context: TrialContext) -> dict:
    from autonet_tf.data import images, pipeline

    data = images.load(_image_config(context.dataset), context.seed)
    x = np.asarray(pipeline.normalize(data.x_train, data.mean, data.std))

    def build(values):
        model = keras.Sequential([keras.Input(data.input_shape)])
        size = min(data.input_shape[:2])
        for _ in range(int(values.get("conv_layers", 2))):
            model.add(keras.layers.Conv2D(32, 3, padding="same", activation="relu"))
            if size >= 2:  # pool while there is something to pool
                model.add(keras.layers.MaxPooling2D(2))
                size //= 2
        model.add(keras.layers.Flatten())
        if values.get("dropout", 0.0):
            model.add(keras.layers.Dropout(float(values["dropout"])))
        model.add(keras.layers.Dense(int(values.get("numhidden", 64)), activation="relu"))
        model.add(keras.layers.Dense(data.num_classes))
        model.compile(keras.optimizers.Adam(float(values.get("learning_rate", 1e-3))),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    return keras_trial(build, x, data.y_train, batch_size=64)(values, context)


def _image_config(dataset: str | None):
    """The data of the image trials: --dataset, digits when unset.

    In memory (the Keras trials fit on arrays): a folder is never streamed here.
    """
    from autonet_tf.configs import DataConfig

    return DataConfig(dataset=dataset or "digits", stream="off")


def _report_history(context: TrialContext, history: list[dict]) -> None:
    """Sends a trainer's history (one record per epoch) to the chief, epoch by epoch.

    Sent after the run, so these trials are never stopped early.
    """
    for row in history:
        context.report(row["epoch"], {"val_loss": row["val_loss"],
                                      "val_accuracy": row["val_accuracy"]})


def darts_search_trial(values: dict, context: TrialContext) -> dict:
    from autonet_tf.configs import SearchConfig
    from autonet_tf.search import run_search

    config = SearchConfig(**{"epochs": context.epochs, "seed": context.seed,
                             "progress": False, **config_fields(SearchConfig, values)},
                          data=_image_config(context.dataset),
                          model_dir=context.directory)
    config.validate()
    result = run_search(config, strategy=context.strategy)
    history = result.history or [{}]
    _report_history(context, history)
    last = history[-1]
    return {"val_loss": last["val_loss"], "val_accuracy": last["val_accuracy"],
            "loss": last["train_loss"], "accuracy": last["train_accuracy"]}


def train_genotype_trial(values: dict, context: TrialContext) -> dict:
    from autonet_tf.configs import TrainConfig
    from autonet_tf.train import run_train

    fields = config_fields(TrainConfig, values)
    config = TrainConfig(**{"epochs": context.epochs, "seed": context.seed, "progress": False,
                            "export": False, **fields},
                         data=_image_config(context.dataset),
                         model_dir=context.directory)
    result = run_train(config, strategy=context.strategy)
    history = result.history or [{}]
    _report_history(context, history)
    return {"val_loss": result.test_loss, "val_accuracy": result.test_accuracy,
            "loss": history[-1].get("train_loss", math.nan),
            "accuracy": history[-1].get("train_accuracy", math.nan)}


TRIALS = {"mlp": mlp_trial, "simple_cnn": simple_cnn_trial,
          "darts_search": darts_search_trial, "train_genotype": train_genotype_trial}




def check_inputs(name: str, dataset: str | None) -> None:
    """Reads once, before any trial, the dataset every trial of built-in ``name``
    reads, so bad input is one error, not one failed trial after another
    (the settings are :func:`autonet_tf.tuning.checks.check_settings`'). Raises
    UserInputError.
    """
    check_trial_name(name)
    if name == "mlp":
        _tabular(dataset)
        return
    from autonet_tf.data import images

    images.load(_image_config(dataset), 0)


def get_trial(name: str):
    check_trial_name(name)
    return TRIALS[name]
