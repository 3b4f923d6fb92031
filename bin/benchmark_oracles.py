#!/usr/bin/env python
"""Compares the oracles at equal trial budgets over several seeds.

    python bin/benchmark_oracles.py                       # every task, every oracle
    python bin/benchmark_oracles.py --tasks=branin --trials=50 --seeds=10
    python bin/benchmark_oracles.py --tasks=simple_cnn --model_trials=30 --explorations=0.2,0

For every task, budget, oracle and seed it runs one search and prints one
JSON line per (task, budget, oracle) with the median (and min/max) over seeds
of the best objective found and the mean wall time of a search. Lower is
better for every task: Branin (minimum 0.397887) and Hartmann-6 (minimum
-3.32237) at every budget of --trials; the iris MLP (validation loss) and
the simple_cnn NAS space on digits (validation loss, --nas_epochs epochs per
trial) at --model_trials. The weighted random oracle runs once per value of
--explorations and --candidates (exploration 0 is the plain algorithm;
candidates 1 turns its model off). All trials run in this process.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli  # noqa: E402

TASKS = ("branin", "hartmann6", "iris_mlp", "simple_cnn")
flags.DEFINE_list("tasks", list(TASKS), f"Tasks among {', '.join(TASKS)}.")
flags.DEFINE_list("oracles", ["weighted_random", "random", "grid", "bayesian"], "Oracles.")
flags.DEFINE_list("trials", ["10", "30", "100"], "Budgets (trials per search) of the "
                  "synthetic functions.")
flags.DEFINE_integer("model_trials", 30, "Trials per search of the iris and simple_cnn tasks.")
flags.DEFINE_list("explorations", ["0.2"], "Exploration settings of the weighted random "
                  "oracle to compare (0: the plain algorithm).")
flags.DEFINE_list("candidates", ["64"], "Candidates per trial of the weighted random oracle's "
                  "model to compare (1: no model).")
flags.DEFINE_integer("seeds", 5, "Seeds per (task, budget, oracle).")
flags.DEFINE_integer("epochs_per_trial", 10, "Epochs of an iris MLP trial.")
flags.DEFINE_integer("nas_epochs", 3, "Epochs of a simple_cnn trial.")
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
    try:
        budgets = [int(t) for t in FLAGS.trials]
        explorations = [float(e) for e in FLAGS.explorations]
        candidates = [int(c) for c in FLAGS.candidates]
    except ValueError as e:
        cli.fail(f"--trials/--explorations/--candidates: {e}")
    for name, value in [("trials", min(budgets)), ("seeds", FLAGS.seeds),
                        ("model_trials", FLAGS.model_trials),
                        ("epochs_per_trial", FLAGS.epochs_per_trial),
                        ("nas_epochs", FLAGS.nas_epochs)]:
        if value <= 0:
            cli.fail(f"--{name}={value} is invalid: expected an integer > 0")
    # name: (trial, space, budgets, epochs per trial); every objective is minimised
    # (simple_cnn's space maximises val_accuracy: here its val_loss is minimised).
    tasks = {
        "branin": (branin, parse_space({
            "x1": {"type": "float", "min": -5.0, "max": 10.0, "step": 0.05},
            "x2": {"type": "float", "min": 0.0, "max": 15.0, "step": 0.05}}), budgets, 1),
        "hartmann6": (hartmann6, parse_space({
            f"x{i}": {"type": "float", "min": 0.0, "max": 1.0, "step": 0.01}
            for i in range(1, 7)}), budgets, 1),
        "iris_mlp": ("mlp", load_space(builtin_space_path("iris_mlp")), [FLAGS.model_trials],
                     FLAGS.epochs_per_trial),
        "simple_cnn": ("simple_cnn", load_space(builtin_space_path("simple_cnn")),
                       [FLAGS.model_trials], FLAGS.nas_epochs),
    }
    variants = []  # (label, oracle, exploration, candidates)
    for oracle in FLAGS.oracles:
        if oracle == "weighted_random":
            variants += [(f"weighted_random(e={e:g},c={c})", oracle, e, c)
                         for e in explorations for c in candidates]
        else:
            variants.append((oracle, oracle, None, None))
    for task in FLAGS.tasks:
        trial, space, task_budgets, epochs = tasks[task]
        for budget in task_budgets:
            for label, oracle, exploration, cands in variants:
                best, seconds = [], []
                for seed in range(FLAGS.seeds):
                    d = os.path.join(FLAGS.directory, task, str(budget), label, str(seed))
                    shutil.rmtree(d, ignore_errors=True)
                    started = time.time()
                    # Seeds far apart: KerasTuner's random sampling walks seed, seed+1,
                    # ..., so consecutive seeds would give shifted copies of one sequence.
                    result = tune(trial, space, oracle=oracle, max_trials=budget, directory=d,
                                  seed=1000 * (seed + 1), epochs_per_trial=epochs,
                                  exploration=exploration, candidates=cands,
                                  objective="val_loss",
                                  quiet=True)
                    seconds.append(time.time() - started)
                    done = [r["objective"] for r in result.records if r["objective"] is not None]
                    best.append(min(done) if done else float("nan"))
                print(json.dumps({
                    "benchmark": "oracle_best_objective", "task": task, "oracle": label,
                    "trials": budget, "seeds": FLAGS.seeds,
                    "median_best": round(statistics.median(best), 5),
                    "min_best": round(min(best), 5), "max_best": round(max(best), 5),
                    "seconds_per_search": round(statistics.mean(seconds), 2),
                    "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                }), flush=True)

if __name__ == "__main__":
    cli.run(main)
