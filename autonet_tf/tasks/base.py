"""What a task is, and the one driver that runs every task.

A :class:`Task` says what is particular to one kind of run (CNN search,
recurrent search, CNN training, language-model training): its config, its
data, the trainer it builds, what it writes when the trainer is done and
which settings must stay equal for a run directory to be resumed.
:func:`run` owns everything they share, in this order:

1. validate the config (and the genotype a training task trains);
2. check that ``model_dir`` can be created and that a run directory already
   there holds the same model and dataset (otherwise one clear error);
3. load the data and create the tf.distribute strategy (unless given);
4. build the trainer (with a progress note on the chief);
5. create the run directory; the chief writes ``config.json`` and the task's
   start files, then prints what it built;
6. run the trainer: checkpoints, resume, TensorBoard, progress bars, the NaN
   stop and preemption live in the trainer's epoch loop;
7. the task writes its results (chief only) and returns them.

A fifth task is one new module with a :class:`Task` subclass, and a flag
choice in the program that picks it.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from autonet_tf import progress
from autonet_tf.distribute.strategy import create_strategy, is_chief
from autonet_tf.errors import UserInputError
from autonet_tf.io import run_dir


class Task:
    """One kind of run; :func:`run` calls these in the order of the module docstring.

    Args:
      config: the task's config dataclass (validated by :func:`run`).
      data: the dataset or corpus to use; None loads ``config.data``.
    """

    #: "search" or "training": how messages name the run
    kind = "run"
    #: config keys that define the model and must match to resume a run directory
    structural: tuple = ()

    def __init__(self, config, data=None):
        self.config = config
        self.data = data

    # 1-2: before anything is loaded or written
    def validate(self) -> None:
        self.config.validate()

    def record(self) -> dict:
        """``config.json``'s content; the resume check compares it with the old one."""
        return self.config.to_dict()

    # 3-4: data and trainer
    def load_data(self):
        raise NotImplementedError

    def building(self) -> str | None:
        """The progress note shown while the trainer is built, or None."""
        return None

    def build(self, data, strategy: tf.distribute.Strategy):
        """The trainer (validates sizes; writes nothing)."""
        raise NotImplementedError

    # 5: after the run directory exists (chief only)
    def start_files(self) -> dict:
        """Files written with ``config.json`` before the run: name -> JSON value."""
        return {}

    def describe(self, trainer) -> list[str]:
        """Lines the chief prints about what was built."""
        return []

    # 6-7
    def execute(self, trainer):
        """Runs the trainer; returns what :meth:`finish` needs (genotype, metrics)."""
        raise NotImplementedError

    def finish(self, trainer, data, outcome, chief: bool):
        """Writes the results (on the chief) and returns the task's result object."""
        raise NotImplementedError


def run(task: Task, strategy: tf.distribute.Strategy | None = None):
    """Validates, checks, loads, builds, runs and finishes ``task`` (module docstring)."""
    config = task.config
    task.validate()
    run_dir.check_writable_parent(config.model_dir)
    check_resumable(config.model_dir, task.record(), task.structural, task.kind)
    data = task.data if task.data is not None else task.load_data()
    if strategy is None:
        strategy = create_strategy(config.strategy, config.num_devices, config.tpu)
    chief = is_chief(strategy)
    note = task.building()
    with progress.note(note or "", enabled=bool(note) and config.progress and chief):
        trainer = task.build(data, strategy)
    d = run_dir.prepare(config.model_dir)
    if chief:
        run_dir.write_json(os.path.join(d, "config.json"), task.record())
        for name, value in task.start_files().items():
            run_dir.write_json(os.path.join(d, name), value)
        for line in task.describe(trainer):
            progress.say(line)
    outcome = task.execute(trainer)
    return task.finish(trainer, data, outcome, chief)


def check_resumable(model_dir: str, new: dict, structural, kind: str) -> None:
    """Rejects a ``model_dir`` whose ``config.json`` holds a different model or dataset.

    Args:
      model_dir: the run directory.
      new: the new config as a dict (``config.to_dict()``).
      structural: keys that define the model and must match to resume.
      kind: what the run is ("search", "training") for the message.
    """
    path = os.path.join(model_dir, "config.json")
    if not run_dir.exists(path):
        return
    try:
        old = run_dir.read_json(path)
    except (OSError, json.JSONDecodeError):
        return
    for key in structural:
        if key in old and old[key] != new.get(key):
            raise UserInputError(
                f"--model_dir={model_dir!r} holds a {kind} with {key}={old[key]!r}, not "
                f"{new.get(key)!r}; use a new --model_dir to start a different {kind}")
    old_ds = old.get("data", {}).get("dataset")
    new_ds = new.get("data", {}).get("dataset")
    if old_ds is not None and old_ds != new_ds:
        raise UserInputError(
            f"--model_dir={model_dir!r} holds a {kind} on dataset {old_ds!r}, not "
            f"{new_ds!r}; use a new --model_dir")


def keep_export(trainer, export_dir: str) -> bool:
    """A rerun of a finished run keeps the export it already wrote."""
    if trainer.loop.already_complete and run_dir.isdir(export_dir):
        progress.say(f"Export kept: {export_dir} (delete it to export again)")
        return True
    return False
