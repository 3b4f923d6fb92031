"""The controller that runs every trainer's epochs (search and network training).

A :class:`Controller` holds one trainer (:class:`~autonet_tf.training.trainer.Trainer`)
and owns what does not depend on the model or the data: one
``tf.train.Checkpoint`` with a ``CheckpointManager`` (mid-epoch checkpoints,
resume after any kill), the multi-worker preemption handler, TensorBoard
writers, ``history.jsonl``, a Keras progress bar per epoch, the in-graph
loop of ``steps_per_loop`` steps and the stop on a non-finite loss. It is
built in one step, once the trainer's model and optimizers exist, and asks
the trainer for

* ``epoch_iterators(epoch, skip)``: the iterators ``train_step`` takes;
* ``train_step(*iterators)``: summed metrics, at least ``loss`` and, for
  classifiers, ``correct`` (plus the trainer's ``extra_metrics``);
* ``begin_epoch(epoch)``: per-epoch values (learning rate, ...) as a dict
  for the log line;
* ``end_epoch(epoch, global_step)``: evaluates and returns the extra fields
  of the epoch's history record (at least ``val_loss``, ``val_<metric>``);
* ``write_epoch_outputs(epoch, record)``, ``describe_epoch(record)``,
  ``loop_key()`` and ``next_step_is_new()`` (defaults on ``Trainer``).

``trainer.metric`` says what is reported besides the loss: ``accuracy``
(from ``correct``) or ``perplexity`` (``exp(loss)``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import keras
import tensorflow as tf

from autonet_tf import progress, startup
from autonet_tf.errors import Preempted, TrainingDiverged, UserInputError
from autonet_tf.io import run_dir
from autonet_tf.tracking import checkpoint_variables, unreachable_variables

log = logging.getLogger("autonet_tf")


class Controller:
    """Checkpointed, logged epochs of one trainer; see the module docstring.

    Args:
      trainer: the trainer whose steps and hooks it runs (its ``strategy``,
        ``chief``, ``batch_size``, ``metric`` and ``extra_metrics`` too).
      config: the run config (``model_dir``, ``epochs``, ``seed``,
        ``checkpoint_every``, ``checkpoint_secs``, ``log_every``, ``progress``,
        ``steps_per_loop``).
      steps_per_epoch: training steps of one epoch.
      **trackables: what the checkpoint holds besides the position (model,
        optimizers, any state variables); every variable they own must be
        reachable, else it refuses to start.
    """

    def __init__(self, trainer, config, steps_per_epoch: int, **trackables):
        self.trainer = trainer
        self.strategy = trainer.strategy
        self.chief = trainer.chief
        self.metric = trainer.metric
        self.model_dir = config.model_dir
        self.epochs = config.epochs
        self.steps_per_epoch = steps_per_epoch
        self.steps_per_loop = config.steps_per_loop
        self.checkpoint_every = config.checkpoint_every
        self.checkpoint_secs = config.checkpoint_secs
        self.log_every = config.log_every
        self.progress = config.progress
        self._looped = {}
        self.extra_metrics = tuple(trainer.extra_metrics)
        if any(isinstance(t, keras.optimizers.LossScaleOptimizer) for t in trackables.values()):
            self.extra_metrics += ("skipped",)
        with self.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                             name="step_in_epoch")
        self.checkpoint = tf.train.Checkpoint(epoch=self.epoch, step_in_epoch=self.step_in_epoch,
                                              **trackables)
        missing = unreachable_variables(self.checkpoint, trackables.values())
        if missing:  # a programming error, never the user's: refuse to run unsaved
            raise RuntimeError(f"{len(missing)} variables would not be checkpointed, "
                               f"e.g. {missing[:3]}")
        ckpt_dir = os.path.join(self.model_dir, "checkpoints")
        if not self.chief:  # workers save to a scratch place, as tf.distribute expects
            task = self.strategy.cluster_resolver.task_id
            ckpt_dir = os.path.join(self.model_dir, ".workers", f"worker_{task}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=2)
        self._writers = None
        # The preemption handler adds a variable to the checkpoint: create it first.
        self.preemption = self._preemption_handler()
        self.start_position = self._restore()
        self._saved_at = time.time()
        self.history: list[dict] = []
        self.already_complete = False
        self.stop_requested = False

    def metric_value(self, loss: float, correct: float, count: int) -> float:
        """The reported metric of ``count`` steps' mean ``loss`` and summed ``correct``."""
        if self.metric == "perplexity":
            return math.exp(min(loss, 700.0))
        return correct / (count * self.trainer.batch_size)

    def request_stop(self, stop: bool = True) -> None:
        """Ends the run after the current epoch (which counts as the last)."""
        self.stop_requested = stop

    def _preemption_handler(self):
        """tf.distribute's PreemptionCheckpointHandler for a multi-worker cluster, else None.

        When any worker gets SIGTERM (a preemption notice), every worker
        saves a checkpoint at the same step (through ``self.manager``) and
        :class:`Preempted` is raised; rerunning the command resumes there. A
        worker killed without notice loses the steps since the last periodic
        checkpoint (``checkpoint_every``).
        """
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if (not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)
                or resolver is None or not resolver.cluster_spec().jobs):
            return None

        def preempted():
            if self._writers is not None:
                self.flush_writers()  # the process ends without tearing TensorFlow down
            raise Preempted(
                f"preempted (termination notice on a worker); every worker saved "
                f"{self.manager.latest_checkpoint}; rerun the same command on every "
                f"worker to resume")

        return tf.distribute.experimental.PreemptionCheckpointHandler(
            resolver, self.manager,
            termination_config=tf.distribute.experimental.TerminationConfig(exit_fn=preempted))

    # ---------------------------------------------------------------- outputs
    def writer(self, name: str):
        """The TensorBoard writer of ``logs/<name>`` (train, val, ...)."""
        if self._writers is None:
            self._writers = {}
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, "logs", name))
        return self._writers[name]

    def flush_writers(self):
        for w in (self._writers or {}).values():
            w.flush()

    def _read_history(self, completed_epochs):
        path = os.path.join(self.model_dir, "history.jsonl")
        if not run_dir.exists(path):
            return []
        rows = [json.loads(line) for line in run_dir.read_text(path).splitlines()
                if line.strip()]
        return [r for r in rows if r["epoch"] <= completed_epochs]

    def _write_history(self, record: dict, history: list):
        history[:] = [h for h in history if h["epoch"] < record["epoch"]] + [record]
        run_dir.write_text(os.path.join(self.model_dir, "history.jsonl"),
                           "".join(json.dumps(h) + "\n" for h in history))

    # ------------------------------------------------------------------- loop
    def _restore(self) -> tuple[int, int]:
        """Restores the latest checkpoint if any, completely; returns (epoch, step in epoch).

        Every value saved must find its variable and every variable its saved
        value; a checkpoint that does not match (written by an incompatible
        version, or for another model) is bad input, raised before anything
        in the run directory is written.
        """
        path = self.manager.latest_checkpoint
        if path is None:
            return 0, 0
        status = None
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
            status.assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError):  # ValueError: a shape differs
            if status is not None:
                status.expect_partial()  # no second complaint when it is collected
            saved = sum(1 for name, _ in tf.train.list_variables(path)
                        if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"))
            expected = len(checkpoint_variables(self.checkpoint))
            raise UserInputError(
                f"checkpoint {path} does not match this run's model: it holds {saved} "
                f"values for {expected} variables (written by an incompatible version of "
                f"autonet_tf or for another model); use a new --model_dir, or delete "
                f"{os.path.dirname(path)} to start over") from None
        return int(self.epoch.numpy()), int(self.step_in_epoch.numpy())

    def _position(self, epoch, step) -> int:
        """Records (epoch, step) in the checkpointed variables; returns the checkpoint number."""
        self.epoch.assign(epoch)
        self.step_in_epoch.assign(step)
        return epoch * self.steps_per_epoch + step

    def _save(self, epoch, step):
        self.manager.save(checkpoint_number=self._position(epoch, step))
        self._saved_at = time.time()

    def _epoch_end_is_saved(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` (0-based) is checkpointed.

        Always after the last epoch, and on multi-worker clusters (their
        workers must agree); else when the last checkpoint is at least
        ``checkpoint_secs`` old. Saving walks every trackable of the model in
        Python (a second or more for a supernet), a large share of short
        epochs; a kill loses at most ``checkpoint_secs`` plus one epoch.
        """
        return (epoch + 1 >= self.epochs or self.preemption is not None
                or time.time() - self._saved_at >= self.checkpoint_secs)

    def _log_step(self, out: dict, global_step: int):
        with self.writer("train").as_default(step=global_step):
            tf.summary.scalar("loss", out["loss"])
            tf.summary.scalar(self.metric,
                              self.metric_value(out["loss"], out.get("correct", 0.0), 1))
            for k in self.extra_metrics:
                tf.summary.scalar(k, out[k])

    def run(self) -> list[dict]:
        """Runs (or resumes) every epoch; returns the history records."""
        if self.preemption is None:
            return self._run_epochs()
        try:
            return self._run_epochs()
        except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
            # A worker died without notice: the collectives abort everywhere.
            # TensorFlow's message embeds Python tracebacks; keep the cause.
            causes = [line.strip() for line in str(e).splitlines()
                      if "unhealthy" in line or "heartbeat" in line.lower()]
            reason = causes[0][:200] if causes else type(e).__name__
            raise Preempted(
                f"the cluster lost a worker ({reason}); the last checkpoint is "
                f"{self.manager.latest_checkpoint}; rerun the same command on every worker "
                f"to resume") from None

    def _run_epochs(self) -> list[dict]:
        start_epoch, start_step = self.start_position
        self.already_complete = start_epoch >= self.epochs
        if self.already_complete:
            if self.chief:
                progress.say(f"Already complete: the {self.epochs} epochs of {self.model_dir} "
                             f"are done (ask for more --epochs, or use a new --model_dir, to "
                             f"train more)")
        elif (start_epoch, start_step) != (0, 0):
            log.info("Resuming from epoch %d, step %d (%s)", start_epoch, start_step,
                     self.manager.latest_checkpoint)
            if self.chief:
                progress.say(f"Resuming from checkpoint: epoch {start_epoch + 1}, "
                             f"step {start_step}")
        history = self._read_history(start_epoch) if self.chief else []
        self.history = history  # the records so far, also while the epochs run
        self.stop_requested = False
        averaged = ("loss",) + tuple(self.extra_metrics)
        first_step = True
        short = {"accuracy": "acc", "perplexity": "ppl"}[self.metric]
        for epoch in range(start_epoch, self.epochs):
            settings = self.trainer.begin_epoch(epoch)
            skip = start_step if epoch == start_epoch else 0
            iterators = self.trainer.epoch_iterators(epoch, skip)
            bar = None
            if self.progress and self.chief:
                shown = ", ".join(f"{k} {v:.5g}" for k, v in settings.items())
                progress.say(f"Epoch {epoch + 1}/{self.epochs} ({shown})")
                bar = keras.utils.Progbar(self.steps_per_epoch,
                                          stateful_metrics=(short,) + averaged)
                if skip:
                    bar.update(skip)
            sums = dict.fromkeys(averaged + ("correct",), 0.0)
            started = time.time()
            step = skip
            while step < self.steps_per_epoch:
                n = self._steps_in_call(step)
                if self.preemption is not None:
                    # Checked before the step, so a saved (epoch, step) always
                    # means "step not run yet", as for the periodic saves.
                    self.preemption.save_checkpoint_if_preempted(
                        checkpoint_number=self._position(epoch, step))
                new = first_step or self._next_call_is_new()
                with progress.note("  building the step graph (once; minutes for large "
                                   "networks on a CPU)",
                                   enabled=new and self.chief and self.progress):
                    out = {k: float(v) for k, v in self._run_steps(n, iterators, sums).items()}
                first_step = False
                bad = [k for k in averaged if k.endswith("loss") and not math.isfinite(out[k])]
                if bad:
                    where = f"step {step + 1}" if n == 1 else f"steps {step + 1}-{step + n}"
                    raise TrainingDiverged(
                        f"{bad[0]} became {out[bad[0]]} at epoch {epoch + 1} {where}; "
                        f"stopped, the last good checkpoint "
                        f"{self.manager.latest_checkpoint} was kept")
                for k in sums:
                    sums[k] += out.get(k, 0.0)
                step += n
                done = step - skip
                global_step = epoch * self.steps_per_epoch + step
                if bar is not None:
                    bar.update(step, [("loss", sums["loss"] / done),
                                      (short, self.metric_value(
                                          sums["loss"] / done, sums["correct"], done))]
                               + [(k, sums[k] / done) for k in self.extra_metrics])
                # one scalar per log_every steps: a call of n steps logs its mean
                logs = global_step // self.log_every > (global_step - n) // self.log_every
                if self.chief and logs:
                    self._log_step({k: v / n for k, v in out.items()}, global_step)
                if step < self.steps_per_epoch and step % self.checkpoint_every == 0:
                    self._save(epoch, step)
            done = max(self.steps_per_epoch - skip, 1)
            record = {"epoch": epoch + 1, "train_loss": sums["loss"] / done,
                      f"train_{self.metric}": self.metric_value(
                          sums["loss"] / done, sums["correct"], done)}
            record.update({k: sums[k] / done for k in self.extra_metrics})
            record.update(settings)
            global_step = (epoch + 1) * self.steps_per_epoch
            record.update(self.trainer.end_epoch(epoch, global_step))
            record["seconds"] = round(time.time() - started, 3)
            if self.chief:
                with self.writer("train").as_default(step=global_step):
                    tf.summary.scalar("epoch_loss", record["train_loss"])
                    tf.summary.scalar(f"epoch_{self.metric}", record[f"train_{self.metric}"])
                    for k, v in settings.items():
                        tf.summary.scalar(k, v)
                with self.writer("val").as_default(step=global_step):
                    tf.summary.scalar("epoch_loss", record["val_loss"])
                    tf.summary.scalar(f"epoch_{self.metric}", record[f"val_{self.metric}"])
                self.flush_writers()
                self._write_history(record, history)
                self.trainer.write_epoch_outputs(epoch + 1, record)
                progress.say(f"  {self.trainer.describe_epoch(record)}")
            if self.stop_requested:  # e.g. the collapse guard: the run is complete here
                self._save(self.epochs, 0)
                break
            if self._epoch_end_is_saved(epoch):
                self._save(epoch + 1, 0)
        if self.preemption is not None:
            # Stops its cluster watcher threads now (its __del__ does only
            # that), while every worker is still up to see the stop key.
            self.preemption.__del__()
            self.preemption = None
        self.history = history
        return history

    # ------------------------------------------------------------ step calls
    def _steps_in_call(self, step: int) -> int:
        """Steps the next call runs: up to ``steps_per_loop``, never past the
        epoch's end or the next mid-epoch checkpoint."""
        to_checkpoint = self.checkpoint_every - step % self.checkpoint_every
        return max(1, min(self.steps_per_loop, self.steps_per_epoch - step, to_checkpoint))

    def _looped_steps(self, keys: tuple):
        """The ``tf.function(n, *iterators)`` that runs ``train_step`` ``n`` times
        in one ``tf.while_loop`` and returns the summed metrics ``keys``."""
        key = self.trainer.loop_key()
        fn = self._looped.get(key)
        if fn is None:
            def steps(n, *iterators):
                def body(i, sums):
                    out = self.trainer.train_step(*iterators)
                    return i + 1, {k: sums[k] + tf.cast(out[k], tf.float32) if k in out
                                   else sums[k] for k in sums}

                zeros = {k: tf.zeros((), tf.float32) for k in keys}
                return tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), zeros))[1]

            fn = self._looped[key] = tf.function(steps, autograph=False)
        return fn

    def _run_steps(self, n: int, iterators, sums: dict) -> dict:
        """Summed metrics of ``n`` steps: one ``train_step`` call, or the in-graph loop
        (with the training steps' Grappler options, :func:`startup.training_steps`)."""
        with startup.training_steps():
            if self.steps_per_loop == 1:
                return self.trainer.train_step(*iterators)
            return self._looped_steps(tuple(sums))(tf.constant(n), *iterators)

    def _next_call_is_new(self) -> bool:
        if self.steps_per_loop == 1:
            return self.trainer.next_step_is_new()
        fn = self._looped.get(self.trainer.loop_key())
        return fn is None or fn.experimental_get_tracing_count() == 0
