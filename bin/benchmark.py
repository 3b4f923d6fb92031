#!/usr/bin/env python
"""Times one DARTS search iteration or one training step of a discovered network.

    python bin/benchmark.py --batch_size=64 --order=first
    python bin/benchmark.py --batch_size=16 --order=second --iterations=5
    python bin/benchmark.py --mode=train --genotype=DARTS_V2      # 20 cells, C=36, batch 96
    python bin/benchmark.py --mode=rnn_search --order=second      # PTB sizes: 300 units, B=256
    python bin/benchmark.py --mode=rnn_train                      # 850 units, B=64

--mode=search builds the CIFAR-10 supernet (default: 8 cells, C=16, 32x32x3
inputs, 10 classes) and times architecture step + weight step; --mode=train
builds the evaluation network of --genotype (default: the paper's 20 cells,
C=36, auxiliary head, drop path 0.2, batch 96) and times one SGD step. Both
feed random batches, run --warmup iterations (the first one traces and
compiles), then time --iterations and print one JSON line: median/min
seconds per iteration, the first iteration (tracing, graph optimisation and
the first run), the trainer's construction time (build_s), and peak memory
(host RSS high-water mark; on a GPU also the device's peak). With
--baseline_s / --baseline_first_s (figures of another commit measured on the
same machine) the line also gives the speed-up ratios.

Under --strategy=multi_worker every worker process prints its own line.

--mode=rnn_search / rnn_train time one step of the recurrent search (alpha
step + weight step) or of the recurrent language model at the reference
sizes: a 10,000-word vocabulary (PTB's), bptt 35 windows, emsize = nhid =
300 and batch 256 (search) or 850 and batch 64 (training); random tokens.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli, startup  # noqa: E402
from autonet_tf.configs import TRACE_SHARING  # noqa: E402

flags.DEFINE_enum("mode", "search", ["search", "train", "rnn_search", "rnn_train"],
                  "What to time.")
flags.DEFINE_integer("batch_size", None, "Global batch size (search 64, train 96, rnn_search "
                     "256, rnn_train 64).")
flags.DEFINE_integer("nhid", None, "RNN: emsize = nhid (rnn_search 300, rnn_train 850).")
flags.DEFINE_integer("bptt", 35, "RNN: tokens per window.")
flags.DEFINE_integer("vocab_size", 10000, "RNN: vocabulary size.")
flags.DEFINE_enum("order", "first", ["first", "second"], "Architecture gradient order.")
flags.DEFINE_enum("method", "darts", ["darts", "pc_darts"], "Search: DARTS or PC-DARTS "
                  "(partial channels, edge normalisation).")
flags.DEFINE_integer("partial_channels", 4, "PC-DARTS: 1/K of the channels through the ops.")
flags.DEFINE_enum("hessian", "finite_difference", ["finite_difference", "exact"],
                  "Second order: the Hessian-vector product (see bin/search.py --hessian).")
flags.DEFINE_bool("hvp_error", False, "Search, second order: also measure the finite "
                  "difference's relative error against the exact Hessian-vector product on "
                  "one batch (field 'fd_hvp_relative_error', at R = 0.01/||v||).")
flags.DEFINE_integer("layers", None, "Cells (search 8, train 20).")
flags.DEFINE_integer("init_channels", None, "Initial channels (search 16, train 36).")
flags.DEFINE_string("genotype", "DARTS_V2", "Genotype trained in --mode=train.")
flags.DEFINE_integer("image_size", 32, "Input height and width.")
flags.DEFINE_integer("iterations", 5, "Timed iterations.")
flags.DEFINE_integer("warmup", 2, "Untimed iterations (the first compiles).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward pass.")
flags.DEFINE_enum("strategy", "default", ["default", "one_device", "mirrored", "multi_worker"],
                  "Strategy (multi_worker: start one process per TF_CONFIG task).")
flags.DEFINE_integer("num_devices", None, "Replicas for --strategy=mirrored.")
flags.DEFINE_bool("sync_batchnorm", True, "CNN modes, several replicas: BatchNorm statistics "
                  "over the global batch (the programs' default); off: per-replica statistics.")
flags.DEFINE_enum("mixed_precision", "off", ["off", "mixed_float16", "mixed_bfloat16"],
                  "16-bit compute (variables, alphas and losses stay float32).")
flags.DEFINE_float("baseline_s", None, "A median seconds-per-iteration to compare with (e.g. "
                   "from another commit on the same machine); the line then has 'speedup'.")
flags.DEFINE_float("baseline_first_s", None, "A first-iteration time to compare with; the line "
                   "then has 'first_iteration_speedup'.")
flags.DEFINE_enum("trace_sharing", "auto", list(TRACE_SHARING),
                  "Search: how the supernet's edges are traced (see bin/search.py).")
FLAGS = flags.FLAGS


def benchmark_rnn():
    import numpy as np

    from autonet_tf.configs import RNNSearchConfig, RNNTrainConfig
    from autonet_tf.data.text import Corpus
    from autonet_tf.distribute.strategy import create_strategy
    from autonet_tf.search_space.rnn_genotypes import load_recurrent_genotype
    from autonet_tf.training.rnn_search_trainer import RNNSearchTrainer
    from autonet_tf.training.rnn_trainer import RNNTrainer

    search = FLAGS.mode == "rnn_search"
    batch = FLAGS.batch_size or (256 if search else 64)
    nhid = FLAGS.nhid or (300 if search else 850)
    for name, value in (("batch_size", batch), ("nhid", nhid), ("bptt", FLAGS.bptt),
                        ("vocab_size", FLAGS.vocab_size), ("iterations", FLAGS.iterations)):
        if value <= 0:
            cli.fail(f"--{name}={value} is invalid: expected an integer > 0")
    steps = FLAGS.warmup + FLAGS.iterations
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, FLAGS.vocab_size, batch * (FLAGS.bptt * steps + 2) + 100)
    vocab = [f"w{i}" for i in range(FLAGS.vocab_size - 1)] + ["<unk>"]
    corpus = Corpus("random", vocab, tokens.astype(np.int32), tokens[:batch * 80],
                    tokens[:200])
    common = dict(model_dir="/tmp/autonet_benchmark_unused", batch_size=batch, bptt=FLAGS.bptt,
                  emsize=nhid, nhid=nhid, variable_bptt=False, jit_compile=FLAGS.jit_compile,
                  strategy=FLAGS.strategy, num_devices=FLAGS.num_devices, progress=False,
                  mixed_precision=FLAGS.mixed_precision)
    if search:
        config = RNNSearchConfig(order=FLAGS.order, hessian=FLAGS.hessian, **common)
    else:
        config = RNNTrainConfig(genotype=FLAGS.genotype, **common)
    config.validate()
    strategy = create_strategy(config.strategy, config.num_devices)
    started = time.perf_counter()
    if search:
        trainer = RNNSearchTrainer(config, corpus, strategy)
    else:
        trainer = RNNTrainer(config, load_recurrent_genotype(FLAGS.genotype), corpus, strategy)
    build_s = time.perf_counter() - started
    times = _time_steps(trainer, trainer.epoch_iterators(0))
    _report({"benchmark": "rnn_search_step" if search else "rnn_train_step",
             "order": FLAGS.order if search else None,
             "genotype": None if search else FLAGS.genotype,
             "hessian": FLAGS.hessian if search and FLAGS.order == "second" else None,
             "parameters": trainer.model.count_parameters(), "batch_size": batch,
             "bptt": FLAGS.bptt, "nhid": nhid, "vocab_size": FLAGS.vocab_size,
             "jit_compile": FLAGS.jit_compile, "strategy": FLAGS.strategy,
             "mixed_precision": FLAGS.mixed_precision, "replicas": trainer.replicas,
             "build_s": round(build_s, 2)}, times)


def main(argv):
    del argv
    from autonet_tf.distribute.strategy import create_strategy, prepare_devices

    prepare_devices(FLAGS.strategy, FLAGS.num_devices)
    if FLAGS.mode.startswith("rnn"):
        return benchmark_rnn()
    import numpy as np

    from autonet_tf.configs import SearchConfig, TrainConfig
    from autonet_tf.data.images import ImageDataset
    from autonet_tf.search_space.genotypes import load_genotype
    from autonet_tf.training.network_trainer import NetworkTrainer
    from autonet_tf.training.search_trainer import SearchTrainer

    search = FLAGS.mode == "search"
    defaults = {"batch_size": 64, "layers": 8, "init_channels": 16} if search else {
        "batch_size": 96, "layers": 20, "init_channels": 36}
    for name, value in defaults.items():
        if FLAGS[name].value is None:
            FLAGS[name].value = value
    for name in ("batch_size", "iterations", "layers", "init_channels", "image_size"):
        if FLAGS[name].value <= 0:
            cli.fail(f"--{name}={FLAGS[name].value} is invalid: expected an integer > 0")
    n = FLAGS.batch_size * 2 * (FLAGS.iterations + FLAGS.warmup)
    rng = np.random.default_rng(0)
    size = FLAGS.image_size
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int32)
    data = ImageDataset("random", x, y, x[:8], y[:8], [str(i) for i in range(10)],
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    common = dict(model_dir="/tmp/autonet_benchmark_unused", batch_size=FLAGS.batch_size,
                  layers=FLAGS.layers, init_channels=FLAGS.init_channels,
                  jit_compile=FLAGS.jit_compile, strategy=FLAGS.strategy,
                  num_devices=FLAGS.num_devices, progress=False,
                  mixed_precision=FLAGS.mixed_precision, sync_batchnorm=FLAGS.sync_batchnorm)
    if search:
        config = SearchConfig(order=FLAGS.order, trace_sharing=FLAGS.trace_sharing,
                              hessian=FLAGS.hessian, method=FLAGS.method,
                              partial_channels=FLAGS.partial_channels, **common)
    else:
        config = TrainConfig(genotype=FLAGS.genotype, network="cifar", **common)
    config.validate()
    strategy = create_strategy(config.strategy, config.num_devices)
    started = time.perf_counter()
    if search:
        trainer = SearchTrainer(config, data, strategy)
    else:
        trainer = NetworkTrainer(config, load_genotype(FLAGS.genotype), data, strategy)
        trainer.begin_epoch(config.epochs // 2)  # drop path on, as mid-training
    build_s = time.perf_counter() - started
    iterators = trainer.epoch_iterators(0)
    times = _time_steps(trainer, iterators)
    extra = {}
    if search and FLAGS.hvp_error:
        extra["fd_hvp_relative_error"] = _hvp_error(trainer, next(trainer.epoch_iterators(1)[0]))
    result = {
        "benchmark": "darts_search_iteration" if search else "network_train_step",
        "order": FLAGS.order if search else None,
        "hessian": FLAGS.hessian if search and FLAGS.order == "second" else None,
        "method": FLAGS.method if search else None,
        "genotype": None if search else FLAGS.genotype,
        "parameters": (sum(int(v.numpy().size) for v in trainer.weight_variables) if search
                       else trainer.parameters),
        "arch_parameters": (sum(int(v.numpy().size) for v in trainer.arch_variables)
                            if search else None), "batch_size": FLAGS.batch_size, "layers": FLAGS.layers,
        "init_channels": FLAGS.init_channels, "image_size": size,
        "jit_compile": FLAGS.jit_compile, "strategy": FLAGS.strategy,
        "mixed_precision": FLAGS.mixed_precision, "replicas": trainer.replicas,
        "sync_batchnorm": bool(trainer.model.sync_bn),
        "trace_sharing": trainer.model.trace_sharing if search else None,
        "build_s": round(build_s, 2), **extra,
    }
    _report(result, times)


def _hvp_error(trainer, batch) -> float:
    """||FD - exact|| / ||exact|| of the mixed Hessian times v = grad_w L (one device)."""
    import numpy as np

    from autonet_tf.training.architect import Architect

    architect = trainer.architect
    weights, alphas = architect.values()
    _, vector, _, _, _ = trainer.gradients(weights, alphas, batch)
    fd = Architect(trainer.gradients, architect.weight_variables, architect.arch_variables,
                   architect.weight_optimizer, "second", architect.epsilon,
                   hessian="finite_difference").hessian_vector_product(
                       weights, alphas, vector, batch)
    exact = trainer.gradients.second_derivative(weights, alphas, vector, batch)
    fd = np.concatenate([np.ravel(t) for t in fd])
    exact = np.concatenate([np.ravel(t) for t in exact])
    return round(float(np.linalg.norm(fd - exact) / np.linalg.norm(exact)), 4)


def _time_steps(trainer, iterators) -> list:
    times = []
    for _ in range(FLAGS.warmup + FLAGS.iterations):
        start = time.perf_counter()
        with startup.training_steps():  # the programs' options (autonet_tf.training.controller)
            out = trainer.train_step(*iterators)
        float(out["loss"])  # wait for the step
        times.append(time.perf_counter() - start)
    return times


def _report(result: dict, times: list) -> None:
    import json
    import platform
    import resource
    import statistics

    import tensorflow as tf

    timed = times[FLAGS.warmup:]
    gpus = tf.config.list_physical_devices("GPU")
    result.update({
        "median_s": round(statistics.median(timed), 4), "min_s": round(min(timed), 4),
        "first_iteration_s": round(times[0], 2),
        "peak_host_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "device": gpus[0].name if gpus else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "tensorflow": tf.__version__,
    })
    if FLAGS.baseline_s:
        result["baseline_s"] = FLAGS.baseline_s
        result["speedup"] = round(FLAGS.baseline_s / result["median_s"], 2)
    if FLAGS.baseline_first_s:
        result["baseline_first_s"] = FLAGS.baseline_first_s
        result["first_iteration_speedup"] = round(FLAGS.baseline_first_s / times[0], 2)
    if gpus:
        info = tf.config.experimental.get_memory_info("GPU:0")
        result["peak_gpu_gb"] = round(info["peak"] / 2**30, 3)
        result["device"] = tf.config.experimental.get_device_details(gpus[0]).get(
            "device_name", "gpu")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    cli.run(main)
