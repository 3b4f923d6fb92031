"""tf.distribute strategy selection from a config field (``--strategy``).

* ``default``: TensorFlow's default strategy (one device, no wrapping).
* ``one_device``: OneDeviceStrategy on the first GPU, else the CPU.
* ``mirrored``: MirroredStrategy over ``num_devices`` local GPUs (or logical
  CPUs when there is no GPU; see :func:`split_cpu`).
* ``multi_worker``: MultiWorkerMirroredStrategy; the cluster comes from
  ``TF_CONFIG``.
* ``tpu``: TPUStrategy on the TPU named by ``tpu`` ('' or 'local' for a local TPU).

The batch size given to the trainers is always the global batch; each
replica gets ``global_batch / num_replicas``.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from autonet_tf.errors import UserInputError


def split_cpu(count: int) -> None:
    """Splits the CPU into ``count`` logical devices (call before any op runs)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as e:
        raise RuntimeError("split_cpu must run before TensorFlow initialises its devices") from e


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserInputError(
            "--strategy=multi_worker needs TF_CONFIG (the cluster's addresses and this "
            "process's task) in the environment; for one machine use --strategy=mirrored "
            "or --strategy=default")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserInputError(f"TF_CONFIG is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise UserInputError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise UserInputError("TF_CONFIG has no 'cluster' object (e.g. {\"worker\": [\"host:port\", ...]})")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserInputError("TF_CONFIG has no 'task' with 'type' and 'index'")
    jobs = cluster.get(task["type"])
    if not isinstance(jobs, list) or not isinstance(task["index"], int) or not (
            0 <= task["index"] < len(jobs)):
        raise UserInputError(
            f"TF_CONFIG task {task!r} does not name an entry of cluster {cluster!r}")
    return config


def create_strategy(name: str = "default", num_devices: int | None = None,
                    tpu: str | None = None) -> tf.distribute.Strategy:
    """Builds the strategy called ``name``; raises UserInputError when it cannot run here."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        if num_devices is not None:
            if num_devices > len(devices):
                raise UserInputError(
                    f"--strategy=mirrored --num_devices={num_devices}: only {len(devices)} "
                    f"device(s) visible ({', '.join(d.name for d in devices)})")
            devices = devices[:num_devices]
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, OSError, tf.errors.OpError, RuntimeError) as e:
            # OSError: a TPU name is looked up over the network (URLError).
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            named = f" --tpu={tpu}" if tpu else " (no --tpu given)"
            raise UserInputError(f"--strategy=tpu{named}: no TPU found ({reason})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserInputError(f"--strategy={name!r} is invalid: expected one of "
                         "default, one_device, mirrored, multi_worker, tpu")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one task that writes run-directory outputs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict() if resolver.cluster_spec() else {}
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def input_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes that each run an input pipeline: the chief and workers of a
    multi-worker cluster, else 1."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec() if resolver is not None else None
    if not spec or not spec.jobs:
        return 1
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)


def prepare_devices(strategy: str, num_devices: int | None) -> None:
    """For ``mirrored`` on a machine without GPUs, splits the CPU into ``num_devices``.

    Must run before TensorFlow executes its first op.
    """
    if strategy != "mirrored" or not num_devices or num_devices < 2:
        return
    if tf.config.list_physical_devices("GPU"):
        return
    # Listing LOGICAL devices would initialise the runtime and forbid the
    # split, so try the split first and look only if it is refused.
    try:
        split_cpu(num_devices)
    except RuntimeError:
        available = len(tf.config.list_logical_devices("CPU"))
        if available < num_devices:
            raise UserInputError(
                f"--strategy=mirrored --num_devices={num_devices}: TensorFlow already runs "
                f"with {available} CPU device(s) and cannot be split any more") from None


def strategy_for(config) -> tf.distribute.Strategy:
    """The strategy a run config (or the parsed flags) names: ``strategy``,
    ``num_devices``, ``tpu``.

    Splits the CPU first where ``mirrored`` needs it (see :func:`prepare_devices`),
    so call it before TensorFlow runs its first op, and once per process.
    """
    prepare_devices(config.strategy, config.num_devices)
    return create_strategy(config.strategy, config.num_devices, config.tpu)
