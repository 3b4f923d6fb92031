"""Test set-up: quiet TensorFlow, two logical CPU devices, seeding, helpers."""

import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from autonet_tf import startup, threads  # noqa: E402

# The start-up settings (garbage collector, Grappler) and thread pools the
# programs use (one thread per kernel on a small CPU host), then two logical
# CPUs for the MirroredStrategy tests; all before any op runs.
startup.configure()
threads.configure()
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
    """Slow tests first, then the other fresh-process ones, then the rest (each
    group in file order). The two workers then start the longest tests early
    and share out the short ones at the end, instead of one worker finishing
    a multi-minute test alone."""
    def rank(item):
        return (0 if item.get_closest_marker("slow") else
                1 if item.get_closest_marker("process") else 2)
    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def mirrored_strategy():
    """ONE MirroredStrategy on the two logical CPUs for the whole session: two
    MirroredStrategy objects in one process mix up their collective-op keys."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def float64():
    """Keras float64 for exact-derivative checks; float32 again afterwards."""
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")


def run_bin(script, *args, timeout=900, env=None):
    """Runs bin/<script> in a fresh process; returns CompletedProcess (text)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", script), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=full_env)


def assert_one_line_error(proc, *fragments):
    """Exit code 2, no traceback, last stderr line 'error: ...' containing fragments."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


def written(marker) -> bool:
    """Whether ``marker`` exists; for a ``ckpt-N.index`` file, also whether the
    ``checkpoint`` state file beside it names ckpt-N (CheckpointManager
    writes the index first and the state file after it, so a resume between
    the two would start from the checkpoint before)."""
    if not os.path.exists(marker):
        return False
    name = os.path.basename(marker)
    if not (name.startswith("ckpt-") and name.endswith(".index")):
        return True
    try:
        with open(os.path.join(os.path.dirname(marker), "checkpoint")) as f:
            latest = f.readline()
    except OSError:
        return False
    return latest.rstrip().endswith(f'{name[:-len(".index")]}"')


def kill_when_exists(script, args, marker, timeout=600):
    """Starts bin/<script>, SIGKILLs it as soon as ``marker`` is :func:`written`."""
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    deadline = time.time() + timeout
    while not written(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"{script} ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def run_bin_with_mock_tfds(script, *args, num_examples=80, timeout=900):
    """Runs bin/<script> in a fresh process inside ``tfds.testing.mock_data``."""
    code = (
        "import runpy, sys\n"
        "import tensorflow_datasets as tfds\n"
        f"sys.argv = {[script, *args]!r}\n"
        f"with tfds.testing.mock_data(num_examples={num_examples}):\n"
        f"    runpy.run_path({os.path.join(ROOT, 'bin', script)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def stateless_training_step(model):
    """A traced ``(x, y) -> (loss, gradients, new non-trainable values)`` of a classifier,
    through ``model.stateless_call`` (nothing is assigned)."""
    import keras
    import tensorflow as tf

    @tf.function(autograph=False)
    def step(x, y):
        trainable = [v.value for v in model.trainable_variables]
        state = [v.value for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            logits, new_state = model.stateless_call(trainable, state, x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True))
        return loss, tape.gradient(loss, trainable), new_state

    return step
