"""TensorFlow's thread pools: one thread per kernel and one kernel per core on small CPU hosts."""

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf import startup, threads
from autonet_tf.errors import UserInputError


@pytest.fixture
def no_thread_env(monkeypatch):
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)


def test_small_cpu_host_runs_one_thread_per_kernel_and_one_kernel_per_core(no_thread_env):
    assert threads.choose(None, None, has_gpu=False, cpus=2) == {"intra": 1, "inter": 2}
    assert threads.choose(None, None, has_gpu=False, cpus=8) == {"intra": 1, "inter": 8}


def test_gpu_or_large_hosts_keep_tensorflows_choice(no_thread_env):
    assert threads.choose(None, None, has_gpu=True, cpus=2) == {"intra": None, "inter": None}
    assert threads.choose(None, None, has_gpu=False, cpus=64) == {"intra": None, "inter": None}


def test_flags_then_environment_outrank_the_default(no_thread_env, monkeypatch):
    assert threads.choose(4, None, has_gpu=False, cpus=2) == {"intra": 4, "inter": 2}
    assert threads.choose(0, 3, has_gpu=False, cpus=2) == {"intra": None, "inter": 3}
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "2")
    assert threads.choose(None, None, has_gpu=False, cpus=2) == {"intra": None, "inter": 2}
    with pytest.raises(UserInputError, match="--inter_op_threads=-1"):
        threads.choose(None, -1, has_gpu=False, cpus=2)


def test_the_suite_runs_with_the_programs_thread_pools():
    # conftest calls threads.configure() as every program does (cli.run)
    expected = threads.choose(None, None, bool(tf.config.list_physical_devices("GPU")))
    if expected["intra"]:
        assert tf.config.threading.get_intra_op_parallelism_threads() == expected["intra"]
    if expected["inter"]:
        assert tf.config.threading.get_inter_op_parallelism_threads() == expected["inter"]


def test_start_up_sets_the_collector_thresholds_and_grappler_options():
    import gc

    try:
        gc.set_threshold(700, 10, 10)
        startup.configure()
        assert gc.get_threshold() == startup.GC_THRESHOLDS
        assert tf.config.optimizer.get_experimental_options()["constant_folding"] is False
        gc.set_threshold(700, 10, 10)
        gc.disable()
        startup.configure_collector()
        assert gc.get_threshold() == (700, 10, 10)  # a disabled collector is left alone
    finally:
        gc.enable()
        startup.configure()


def test_start_up_skips_grappler_work_that_changes_nothing_on_cpu_hosts():
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context

    assert not tf.config.list_physical_devices("GPU")
    # This TensorFlow has the eager-context fields the settings are written to.
    assert startup.set_rewrite_options(startup.CPU_REWRITE_OPTIONS)
    startup.configure()
    # What every traced function is optimised with (tf.function's call options).
    serialized = context.context().function_call_options.config_proto_serialized
    rewrite = config_pb2.ConfigProto.FromString(serialized).graph_options.rewrite_options
    config = rewriter_config_pb2.RewriterConfig
    assert rewrite.meta_optimizer_iterations == config.ONE
    assert rewrite.memory_optimization == config.NO_MEM_OPT
    assert rewrite.layout_optimizer == config.OFF
    assert rewrite.experimental_conditional_code_motion == config.OFF
    assert rewrite.disable_tfg_optimizer
    assert rewrite.constant_folding == config.OFF
    # The thread settings of threads.configure() still apply on top.
    assert context.context().config.intra_op_parallelism_threads == \
        tf.config.threading.get_intra_op_parallelism_threads()
    # Functions still run (and with the remapper's fusions: one is enough to
    # show the config is accepted by the runtime).
    f = tf.function(lambda x: tf.nn.relu(tf.matmul(x, x) + 1.0))
    np.testing.assert_allclose(f(tf.eye(2)).numpy(), [[2.0, 1.0], [1.0, 2.0]])


@pytest.mark.process
def test_a_main_that_does_not_check_flags_first_runs_with_the_programs_settings(no_thread_env):
    # bin/benchmark*.py: cli.run starts TensorFlow with the programs' thread
    # pools and start-up settings before main, so the benchmarks measure what
    # the programs run.
    import subprocess
    import sys

    from conftest import ROOT

    code = ("from autonet_tf import cli\n"
            "def main(argv):\n"
            "    import tensorflow as tf\n"
            "    from autonet_tf import startup\n"
            "    print('THREADS', tf.config.threading.get_intra_op_parallelism_threads(),\n"
            "          tf.config.threading.get_inter_op_parallelism_threads(),\n"
            "          tf.config.optimizer.get_experimental_options().get('constant_folding'))\n"
            "cli.run(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    intra, inter, folding = proc.stdout.split("THREADS")[-1].split()
    expected = threads.choose(None, None, bool(tf.config.list_physical_devices("GPU")))
    assert int(intra) == (expected["intra"] or 0)
    assert int(inter) == (expected["inter"] or 0)
    assert folding == "False"  # startup.GRAPPLER_OPTIONS


def _rewrite_options():
    """The Grappler settings of tf.function calls made now on this thread."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    serialized = context.context().function_call_options.config_proto_serialized
    return config_pb2.ConfigProto.FromString(serialized).graph_options.rewrite_options


def _remapping():
    """The remapper setting of tf.function calls made now on this thread."""
    return _rewrite_options().remapping


def test_training_steps_skip_the_remapper_and_idle_passes_and_other_graphs_keep_them():
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context

    config = rewriter_config_pb2.RewriterConfig
    startup.configure()
    f = tf.function(lambda x: tf.nn.relu(x * 2.0 + 1.0))
    x = tf.constant([-1.0, 0.5])
    outside = f(x).numpy()
    assert _remapping() == config.DEFAULT
    outside_rewrites = _rewrite_options()
    with startup.training_steps():
        assert _remapping() == config.OFF
        rewrites = _rewrite_options()
        if not tf.config.list_physical_devices("GPU"):  # passes that changed no training step
            assert rewrites.loop_optimization == rewrites.implementation_selector == config.OFF
            assert (outside_rewrites.loop_optimization ==
                    outside_rewrites.implementation_selector == config.DEFAULT)
        serialized = context.context().function_call_options.config_proto_serialized
        options = config_pb2.ConfigProto.FromString(serialized)
        # the other start-up settings are kept
        assert options.graph_options.rewrite_options.layout_optimizer == config.OFF
        assert options.inter_op_parallelism_threads == tf.config.threading.\
            get_inter_op_parallelism_threads()
        np.testing.assert_array_equal(f(x).numpy(), outside)
    assert _remapping() == config.DEFAULT


def test_the_controller_runs_every_training_step_with_the_training_options(tmp_path):
    from tensorflow.core.protobuf import rewriter_config_pb2

    from autonet_tf.configs import SearchConfig
    from autonet_tf.data import images
    from autonet_tf.training.search_trainer import SearchTrainer

    config = SearchConfig(model_dir=str(tmp_path), epochs=1, batch_size=16, layers=2,
                          init_channels=4, steps=1, multiplier=1, max_steps_per_epoch=2,
                          progress=False)
    trainer = SearchTrainer(config, images.load(config.data, 1))
    seen = []
    step = trainer.train_step

    def spy(*iterators):
        seen.append(_remapping())
        return step(*iterators)

    trainer.train_step = spy
    trainer.search()
    assert seen == [rewriter_config_pb2.RewriterConfig.OFF] * 2
    assert _remapping() == rewriter_config_pb2.RewriterConfig.DEFAULT  # validation: with it
