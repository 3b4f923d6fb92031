#!/usr/bin/env python
"""Compares the oracles at equal trial budgets over several seeds.

    python bin/benchmark_oracles.py                       # Branin, Hartmann-6, iris MLP
    python bin/benchmark_oracles.py --tasks=branin --trials=50 --seeds=10

For every task, oracle and seed it runs one search of --trials trials and
prints one JSON line per (task, oracle) with the median (and min/max) over
seeds of the best objective found; lower is better for every task (Branin's
minimum is 0.397887, Hartmann-6's is -3.32237; iris: validation loss).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli  # noqa: E402

TASKS = ("branin", "hartmann6", "iris_mlp")
flags.DEFINE_list("tasks", list(TASKS), f"Tasks among {', '.join(TASKS)}.")
flags.DEFINE_list("oracles", ["weighted_random", "random", "grid", "bayesian"], "Oracles.")
flags.DEFINE_integer("trials", 30, "Trials per search (the iris task uses half).")
flags.DEFINE_integer("seeds", 5, "Seeds per (task, oracle).")
flags.DEFINE_integer("epochs_per_trial", 10, "Epochs of an iris MLP trial.")
flags.DEFINE_string("directory", "/tmp/autonet_oracle_benchmark", "Scratch directory.")
FLAGS = flags.FLAGS

_HARTMANN_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_HARTMANN_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
               [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
_HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]


def branin(values, context):
    import math

    x1, x2 = values["x1"], values["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    y = (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10
    return {"val_loss": y}


def hartmann6(values, context):
    import math

    x = [values[f"x{i}"] for i in range(1, 7)]
    y = 0.0
    for a, p, alpha in zip(_HARTMANN_A, _HARTMANN_P, _HARTMANN_ALPHA):
        y -= alpha * math.exp(-sum(a[j] * (x[j] - p[j] * 1e-4) ** 2 for j in range(6)))
    return {"val_loss": y}


def main(argv):
    del argv
    import json
    import platform
    import shutil
    import statistics
    import time

    from autonet_tf.tuning import load_space, parse_space, tune
    from autonet_tf.tuning.space import builtin_space_path

    unknown = sorted(set(FLAGS.tasks) - set(TASKS))
    if unknown:
        cli.fail(f"--tasks: unknown task(s) {unknown}; expected {', '.join(TASKS)}")
    for name in ("trials", "seeds", "epochs_per_trial"):
        if FLAGS[name].value <= 0:
            cli.fail(f"--{name}={FLAGS[name].value} is invalid: expected an integer > 0")
    tasks = {
        "branin": (branin, parse_space({
            "x1": {"type": "float", "min": -5.0, "max": 10.0, "step": 0.05},
            "x2": {"type": "float", "min": 0.0, "max": 15.0, "step": 0.05}}), FLAGS.trials),
        "hartmann6": (hartmann6, parse_space({
            f"x{i}": {"type": "float", "min": 0.0, "max": 1.0, "step": 0.01}
            for i in range(1, 7)}), FLAGS.trials),
        "iris_mlp": ("mlp", load_space(builtin_space_path("iris_mlp")),
                     max(2, FLAGS.trials // 2)),
    }
    for task in FLAGS.tasks:
        trial, space, budget = tasks[task]
        for oracle in FLAGS.oracles:
            best, seconds = [], []
            for seed in range(FLAGS.seeds):
                d = os.path.join(FLAGS.directory, task, oracle, str(seed))
                shutil.rmtree(d, ignore_errors=True)
                started = time.time()
                # Seeds far apart: KerasTuner's random sampling walks seed, seed+1,
                # ..., so consecutive seeds would give shifted copies of one sequence.
                result = tune(trial, space, oracle=oracle, max_trials=budget, directory=d,
                              seed=1000 * (seed + 1), epochs_per_trial=FLAGS.epochs_per_trial,
                              quiet=True)
                seconds.append(time.time() - started)
                done = [r["objective"] for r in result.records if r["objective"] is not None]
                best.append(min(done) if done else float("nan"))
            print(json.dumps({
                "benchmark": "oracle_best_objective", "task": task, "oracle": oracle,
                "trials": budget, "seeds": FLAGS.seeds,
                "median_best": round(statistics.median(best), 5),
                "min_best": round(min(best), 5), "max_best": round(max(best), 5),
                "seconds_per_search": round(statistics.mean(seconds), 2),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            }), flush=True)


if __name__ == "__main__":
    cli.run(main)
