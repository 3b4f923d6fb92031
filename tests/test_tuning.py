"""Hyperparameter search: YAML spaces, the weighted random oracle, baselines, workers."""

import json
import math
import os

import numpy as np
import pytest

from autonet_tf.errors import UserInputError
from autonet_tf.tuning import load_space, parse_space, tune
from autonet_tf.tuning.oracles import (SHRINKS, WeightedRandomOracle, anchor_probability,
                                       expected_improvement, next_point, sample_near)
from autonet_tf.tuning.space import builtin_space_path
from conftest import assert_one_line_error, run_bin

SPACE = parse_space({
    "lr": {"type": "float", "min": 1e-4, "max": 1e-1, "log": True},
    "width": {"type": "float", "min": 0.0, "max": 3.0},
    "units": {"type": "int", "min": 1, "max": 10},
    "act": {"type": "choice", "values": ["relu", "tanh", "gelu", "elu"]},
    "epochs": {"type": "fixed", "value": 7},
})


def quadratic(values, context):
    """A deterministic objective: distance of (log lr, width, units) from a target."""
    loss = ((math.log10(values["lr"]) + 2) ** 2 + (values["width"] - 2.2) ** 2
            + (values["units"] - 8) ** 2 / 10 + (values["act"] != "gelu"))
    context.report(1, {"val_loss": loss + 1.0, "val_accuracy": 0.0})
    return {"val_loss": loss, "val_accuracy": 1.0 / (1.0 + loss)}


def test_first_two_points_cut_the_diagonal_in_three():
    first, second = SPACE.decode([1 / 3] * 4), SPACE.decode([2 / 3] * 4)
    assert first["lr"] == pytest.approx(10 ** -3)  # log axis: 1e-4 * 1000^(1/3)
    assert second["lr"] == pytest.approx(10 ** -2)
    assert first["width"] == pytest.approx(1.0) and second["width"] == pytest.approx(2.0)
    assert (first["units"], second["units"]) == (4, 7)  # 1 + 9/3, 1 + 18/3
    assert (first["act"], second["act"]) == ("tanh", "gelu")  # nearest index 1, 2
    assert first["epochs"] == second["epochs"] == 7


def test_the_oracle_starts_at_one_third_and_two_thirds(tmp_path):
    result = tune(quadratic, SPACE, max_trials=2, directory=str(tmp_path))
    points = {r["trial_id"]: r["hyperparameters"] for r in result.records}
    assert points["0"] == SPACE.decode([1 / 3] * 4)
    assert points["1"] == SPACE.decode([2 / 3] * 4)


@pytest.mark.parametrize("v1, v2, direction, expected", [
    (1.0, 3.0, "min", 0.75), (3.0, 1.0, "max", 0.75), (0.0, 0.0, "min", 0.5),
    (-3.0, -1.0, "min", 0.75), (-1.0, 2.0, "min", 1.0),
])
def test_anchor_probability(v1, v2, direction, expected):
    assert anchor_probability(v1, v2, direction) == pytest.approx(expected)


def test_next_point_nearest_best_frequency_matches_p1():
    b1, b2 = np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.4, 0.9])
    rng = np.random.default_rng(0)
    n, near_b1 = 4000, 0
    lo = np.clip(np.minimum(b1, b2) - np.abs(b1 - b2) / 2, 0, 1)
    hi = np.clip(np.maximum(b1, b2) + np.abs(b1 - b2) / 2, 0, 1)
    for _ in range(n):
        x, anchor, p1 = next_point(b1, b2, 1.0, 3.0, "min", rng)
        assert np.all(x >= lo - 1e-12) and np.all(x <= hi + 1e-12)
        closer_b1 = np.sum((x - b1) ** 2) < np.sum((x - b2) ** 2)
        assert closer_b1 == (anchor == 0)
        near_b1 += closer_b1
    assert p1 == 0.75
    sigma = math.sqrt(p1 * (1 - p1) / n)
    assert abs(near_b1 / n - p1) < 4 * sigma


def test_sample_near_coinciding_points_still_moves():
    rng = np.random.default_rng(1)
    xs = [sample_near([0.5, 0.5], [0.5, 0.5], 0, rng) for _ in range(20)]
    assert all(np.all(np.abs(x - 0.5) <= 0.1 + 1e-12) for x in xs)
    assert len({tuple(x) for x in xs}) == 20


def test_nan_and_inf_never_anchor_and_failed_trials_are_recorded(tmp_path):
    def flaky(values, context):
        k = int(context.trial_id)
        if k == 0:
            return {"val_loss": float("nan")}
        if k == 2:
            raise RuntimeError("boom")
        if k == 3:
            return {"val_loss": float("inf")}
        return quadratic(values, context)

    result = tune(flaky, SPACE, max_trials=8, directory=str(tmp_path), seed=3)
    by_id = {r["trial_id"]: r for r in result.records}
    assert sorted(by_id, key=int) == [str(i) for i in range(8)]  # the search went on
    for k in ("0", "2", "3"):
        assert by_id[k]["status"] == "FAILED" and by_id[k]["objective"] is None
    finite = [r for r in result.records if r["objective"] is not None]
    assert result.best_objective == min(r["objective"] for r in finite)
    # Trials 4.. were sampled around finite results only: none equals a failed point.
    failed_points = [SPACE.encode(by_id[k]["hyperparameters"]) for k in ("0", "3")]
    for k in range(5, 8):
        point = SPACE.encode(by_id[str(k)]["hyperparameters"])
        assert all(np.abs(np.subtract(point, f)).sum() > 0 for f in failed_points)


def test_same_seed_same_sequence_also_across_a_resume(tmp_path):
    whole = tune(quadratic, SPACE, max_trials=7, directory=str(tmp_path / "a"), seed=11)
    tune(quadratic, SPACE, max_trials=4, directory=str(tmp_path / "b"), seed=11)
    resumed = tune(quadratic, SPACE, max_trials=7, directory=str(tmp_path / "b"), seed=11)
    def seq(result):
        return [r["hyperparameters"] for r in sorted(result.records, key=lambda r: int(r["trial_id"]))]
    assert len(seq(whole)) == 7 and seq(whole) == seq(resumed)
    other = tune(quadratic, SPACE, max_trials=7, directory=str(tmp_path / "c"), seed=12)
    assert seq(other)[:2] == seq(whole)[:2] and seq(other)[2:] != seq(whole)[2:]
    d = resumed.directory
    assert {"trials.jsonl", "best_hyperparameters.json", "objective.png",
            "val_accuracy.png"} <= set(os.listdir(d))
    assert len(os.listdir(os.path.join(d, "logs", "hparams"))) == 7
    record = json.loads(open(os.path.join(d, "trials.jsonl")).readline())
    assert record["epochs"]["val_loss"] == [pytest.approx(record["objective"] + 1.0)]


class _Killed(BaseException):
    """Stands for the process being killed (nothing catches it)."""


def test_tuning_state_files_are_replaced_whole_so_a_kill_never_truncates_them(
        tmp_path, monkeypatch):
    # KerasTuner writes oracle.json, trial.json and the tuner's file in place; a
    # tune killed while writing one left a truncated file that its resume could
    # not read (JSONDecodeError).
    d = tune(quadratic, SPACE, max_trials=2, directory=str(tmp_path), seed=3).directory
    state = [os.path.join(d, "oracle.json"), os.path.join(d, "tuner0.json"),
             *(os.path.join(d, t, "trial.json") for t in os.listdir(d) if t.startswith("trial_"))]
    before = {path: open(path).read() for path in state}
    assert len(before) == 4

    def killed(src, dst):  # every later write dies before its rename
        raise _Killed

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(_Killed):
        tune(quadratic, SPACE, max_trials=3, directory=str(tmp_path), seed=3)
    monkeypatch.undo()
    assert {path: open(path).read() for path in state} == before  # whole, not rewritten
    resumed = tune(quadratic, SPACE, max_trials=3, directory=str(tmp_path), seed=3)
    assert len(resumed.records) == 3


# The plain algorithm's first eight points for seed 5 on SPACE and quadratic, as the
# oracle drew them before exploration existed (rounded to 6 digits).
PLAIN_SEQUENCE = [
    (0.001, 1.0, 4, "tanh"), (0.01, 2.0, 7, "gelu"), (0.003726, 2.468792, 5, "tanh"),
    (0.005611, 2.46579, 8, "gelu"), (0.004372, 2.297024, 8, "gelu"),
    (0.004471, 2.407221, 8, "gelu"), (0.004494, 2.249926, 8, "gelu"),
    (0.004966, 2.171421, 8, "gelu"),
]


def _sequence(result):
    ordered = sorted(result.records, key=lambda r: int(r["trial_id"]))
    return [(round(r["hyperparameters"]["lr"], 6), round(r["hyperparameters"]["width"], 6),
             r["hyperparameters"]["units"], r["hyperparameters"]["act"]) for r in ordered]


def test_exploration_zero_is_the_plain_algorithm_and_the_default_explores(tmp_path):
    plain = tune(quadratic, SPACE, max_trials=8, directory=str(tmp_path / "plain"), seed=5,
                 exploration=0)
    assert _sequence(plain) == PLAIN_SEQUENCE
    explored = tune(quadratic, SPACE, max_trials=8, directory=str(tmp_path / "default"),
                    seed=5)
    assert _sequence(explored)[:2] == PLAIN_SEQUENCE[:2]
    assert _sequence(explored)[2:] != PLAIN_SEQUENCE[2:]


def test_exploration_moves_axes_on_which_the_two_best_points_agree():
    # b1 and b2 agree on the second axis: the plain box has no width there.
    b1, b2 = [0.2, 0.5], [0.4, 0.5]
    rng = np.random.default_rng(0)
    plain = [sample_near(b1, b2, 0, rng)[1] for _ in range(50)]
    wide = [sample_near(b1, b2, 0, rng, min_margin=0.05)[1] for _ in range(50)]
    assert set(plain) == {0.5}
    assert min(wide) < 0.48 and max(wide) > 0.52 and all(0.45 <= w <= 0.55 for w in wide)
    # On a discrete axis the box reaches at least the neighbouring values.
    space = load_space(builtin_space_path("simple_cnn"))
    assert [round(p.resolution, 3) for p in space.axes] == [0.25, 0.002, 0.333]
    b1, b2 = space.encode({"conv_layers": 2, "numhidden": 100, "dropout": 0.2}), \
        space.encode({"conv_layers": 2, "numhidden": 300, "dropout": 0.2})
    margin = np.maximum(0.05, [p.resolution for p in space.axes])
    layers = {space.decode(sample_near(b1, b2, 0, rng, margin))["conv_layers"]
              for _ in range(200)}
    assert layers == {1, 2, 3}


def test_expected_improvement_prefers_the_region_a_fitted_model_predicts_best():
    # A 1-D bowl with its minimum at 0.7, seen at 8 points that avoid it.
    x = np.array([[0.0], [0.1], [0.3], [0.45], [0.9], [1.0], [0.2], [0.55]])
    y = (x[:, 0] - 0.7) ** 2
    candidates = np.array([[0.05], [0.25], [0.7], [0.95]])
    gain = expected_improvement(x, y, candidates, "min", seed=0)
    assert int(np.argmax(gain)) == 2 and gain[2] > 10 * gain[0]
    # A maximised objective is the same problem mirrored.
    assert int(np.argmax(expected_improvement(x, -y, candidates, "max", seed=0))) == 2


def _best_of(direction_values, trials, seed, **settings):
    def bowl(values, context):  # minimum 0 at (0.62, 0.27), off every diagonal point
        return {"val_loss": (values["a"] - 0.62) ** 2 + 3 * (values["b"] - 0.27) ** 2}

    space = parse_space({"a": {"type": "float", "min": 0.0, "max": 1.0},
                         "b": {"type": "float", "min": 0.0, "max": 1.0}})
    d = direction_values / f"{seed}_{settings.get('candidates', 'default')}"
    result = tune(bowl, space, max_trials=trials, directory=str(d), seed=seed, quiet=True,
                  **settings)
    return min(r["objective"] for r in result.records)


@pytest.mark.slow
def test_the_model_ranks_candidates_and_refines_a_minimum_the_box_alone_does_not(tmp_path):
    seeds = range(3)
    guided = [_best_of(tmp_path, 20, s) for s in seeds]
    unguided = [_best_of(tmp_path, 20, s, candidates=1) for s in seeds]
    assert np.median(guided) < 0.1 * np.median(unguided), (guided, unguided)
    # The point kept is the candidate of largest expected improvement.
    space = parse_space({"a": {"type": "float", "min": 0.0, "max": 1.0}})
    oracle = WeightedRandomOracle(space, objective="val_loss", max_trials=9, seed=3)
    results = sorted([([u], (u - 0.4) ** 2) for u in (0.0, 0.2, 0.9, 1.0)],
                     key=lambda r: r[1])  # best first, as the oracle keeps them
    chosen = oracle._model_choice(results, np.random.default_rng(11), 4)
    rng = np.random.default_rng(11)
    pool = [oracle._propose(results, rng, SHRINKS[j % len(SHRINKS)])
            for j in range(oracle.candidates)]
    gain = expected_improvement([p for p, _ in results], [v for _, v in results], pool,
                                "min", seed=3 + 4)
    assert chosen == pytest.approx(pool[int(np.argmax(gain))])
    assert abs(chosen[0] - 0.4) < 0.15


def test_exploration_zero_or_one_candidate_turns_the_model_off():
    space = parse_space({"a": {"type": "float", "min": 0.0, "max": 1.0}})
    assert WeightedRandomOracle(space, objective="val_loss", seed=0).candidates == 64
    assert WeightedRandomOracle(space, objective="val_loss", seed=0,
                                exploration=0).candidates == 1
    with pytest.raises(UserInputError, match="candidates=0 is invalid"):
        WeightedRandomOracle(space, objective="val_loss", seed=0, candidates=0)


def test_two_trials_failing_the_same_way_stop_the_search(tmp_path):
    def broken(values, context):
        raise FileNotFoundError("no such file: data.csv")

    result = tune(broken, SPACE, max_trials=10, directory=str(tmp_path))
    assert [r["status"] for r in result.records] == ["FAILED", "FAILED"]  # not 10
    assert result.records[0]["message"] == "FileNotFoundError: no such file: data.csv"
    assert "trials 00 and 01 failed with the same error" in result.stop_reason
    traceback = (tmp_path / "search" / "trial_01" / "error.txt").read_text()
    assert traceback.startswith("Traceback") and "in broken" in traceback

    def different(values, context):  # failures that differ are the trials' own: go on
        raise RuntimeError(f"trial {context.trial_id} diverged")

    result = tune(different, SPACE, max_trials=4, directory=str(tmp_path / "other"))
    assert len(result.records) == 4 and result.stop_reason is None


def test_a_resume_with_another_oracle_or_space_is_refused(tmp_path):
    tune(quadratic, SPACE, max_trials=2, directory=str(tmp_path))
    with pytest.raises(UserInputError, match="started with candidates=64, exploration=0.2, "
                                             "oracle=weighted_random, not candidates=None, "
                                             "exploration=None, oracle=random"):
        tune(quadratic, SPACE, oracle="random", max_trials=3, directory=str(tmp_path))
    narrower = parse_space({"lr": {"type": "float", "min": 1e-3, "max": 1e-1}})
    with pytest.raises(UserInputError, match="started with the space's parameters"):
        tune(quadratic, narrower, max_trials=3, directory=str(tmp_path))
    records = open(tmp_path / "search" / "trials.jsonl").read()
    assert len(tune(quadratic, SPACE, max_trials=3, directory=str(tmp_path)).records) == 3
    assert open(tmp_path / "search" / "trials.jsonl").read().startswith(records)


@pytest.mark.parametrize("oracle", ["random", "grid", "bayesian"])
def test_keras_tuner_baselines_run_on_the_same_space(oracle, tmp_path):
    space = parse_space({"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "log": True,},
                         "width": {"type": "float", "min": 0.0, "max": 3.0, "step": 0.5},
                         "units": {"type": "int", "min": 1, "max": 10},
                         "act": {"type": "choice", "values": ["relu", "gelu"]}})
    result = tune(quadratic, space, oracle=oracle, max_trials=4, directory=str(tmp_path))
    assert len(result.records) == 4 and all(r["status"] == "COMPLETED" for r in result.records)
    for r in result.records:
        values = r["hyperparameters"]
        assert 1e-4 <= values["lr"] <= 1e-1 and values["act"] in ("relu", "gelu")
        assert values["width"] in np.arange(0, 3.01, 0.5)


@pytest.mark.parametrize("text, fragment", [
    ("a: {type: real, min: 0, max: 1}", "parameter 'a': unknown type 'real'"),
    ("a: {type: float, min: 2, max: 1}", "parameter 'a': min (2) > max (1)"),
    ("a: {type: float, min: 0, max: 1, log: true}", "parameter 'a': log scale needs min > 0"),
    ("a: {type: choice, values: []}", "parameter 'a': type choice needs a non-empty list"),
    ("a: {type: int, min: 0, max: 1}\na: {type: int, min: 0, max: 2}", "duplicate parameter name 'a'"),
    ("a: {type: int, min: 0.5, max: 3}", "parameter 'a': min must be an integer"),
    ("a: {type: float, min: 0, max: 1, stepp: 2}", "parameter 'a': unknown key(s) ['stepp']"),
    ("a: [1, 2", "invalid YAML"),
])
def test_yaml_validation_names_the_parameter_and_the_problem(tmp_path, text, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(UserInputError) as e:
        load_space(str(path))
    assert fragment in str(e.value) and str(path) in str(e.value)


def test_the_checks_without_tensorflow_know_every_built_in_trial():
    from autonet_tf.tuning import checks, trials

    assert tuple(trials.TRIALS) == checks.TRIAL_NAMES
    assert set(checks.CONFIG_OF_TRIAL) <= set(checks.TRIAL_NAMES)


def test_shipped_spaces_load():
    for name in ("iris_mlp", "simple_cnn", "darts_search"):
        space = load_space(builtin_space_path(name))
        assert space.trial and space.objective["name"]
    cnn = load_space(builtin_space_path("simple_cnn"))
    assert [p.name for p in cnn.params] == ["conv_layers", "numhidden", "dropout"]


@pytest.mark.slow
def test_chief_and_two_workers_finish_the_budget_once_each(tmp_path):
    d = tmp_path / "tune"
    # Modes mixed on one directory: in-process, chief + 2 workers, in-process again.
    first = run_bin("tune.py", "--max_trials=2", "--epochs_per_trial=2", f"--directory={d}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = open(d / "search" / "trials.jsonl").read()
    proc = run_bin("tune.py", "--max_trials=5", "--epochs_per_trial=2", "--workers=2",
                   f"--directory={d}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[trial 0]" not in proc.stdout and "[trial 1]" not in proc.stdout  # not rerun
    assert open(d / "search" / "trials.jsonl").read().startswith(before)  # nor overwritten
    records = [json.loads(l) for l in open(d / "search" / "trials.jsonl")]
    assert sorted(int(r["trial_id"]) for r in records) == [0, 1, 2, 3, 4]  # none lost, none twice
    again = run_bin("tune.py", "--max_trials=5", "--epochs_per_trial=2", f"--directory={d}")
    assert again.returncode == 0 and "[trial" not in again.stdout  # nothing left to run
    assert all(r["status"] == "COMPLETED" for r in records)
    # Per-epoch accuracy reached the chief from the workers and was printed.
    assert "[trial 2] epoch 2:" in proc.stdout and "val_accuracy=" in proc.stdout
    assert all(len(r["epochs"]["val_accuracy"]) == 2 for r in records)
    best = json.load(open(d / "search" / "best_hyperparameters.json"))
    assert best["objective"]["value"] == min(r["objective"] for r in records)
    assert "Best trial" in proc.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--oracle=annealing"], "--oracle"),
    (["--space=missing.yaml"], "--space='missing.yaml': no such file"),
    (["--objective=f1"], "say whether to minimise or maximise"),
    (["--objective=val_auc"], "--objective='val_auc' is not a metric of the 'mlp' trial"),
    (["--role=worker", "--chief_port=9", "--chief_timeout=2"], "cannot reach the chief at 127.0.0.1:9"),
    # What every trial reads is checked once, before the first trial.
    (["--space=simple_cnn", "--dataset=octmnist.npz"], "--dataset='octmnist.npz': no such .npz"),
    (["--dataset=nope"], "--dataset='nope' is not a tabular dataset"),
    (["--oracle=random", "--exploration=0.2"], "--exploration is a setting of the weighted"),
    (["--exploration=1.5"], "exploration=1.5 is invalid"),
    (["--devices_per_worker=2"], "--devices_per_worker needs --workers=N"),
    (["--workers=2", "--devices_per_worker=2", "--strategy=tpu"], "cannot be combined"),
    (["--strategy=mirrored", "--num_devices=0"], "--num_devices=0 is invalid"),
    (["--space=darts_search", "--trial=train_genotype"], "not settings of TrainConfig"),
])
@pytest.mark.process
def test_tune_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    proc = run_bin("tune.py", f"--directory={tmp_path / 'run'}", *args)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()  # nothing left behind


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_trial_runs_again(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    d = tmp_path / "tune"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bin", "tune.py"), "--max_trials=3",
         "--epochs_per_trial=40", "--workers=2", f"--directory={d}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"))
    lines = []
    for line in proc.stdout:  # wait until a worker is mid-trial
        lines.append(line)
        if "epoch 3:" in line:
            break
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if f"--directory={d}" in cmdline and "--worker_id=tuner0" in cmdline:
            pids.append(int(pid))
    assert pids, "worker tuner0 not found"
    os.kill(pids[0], signal.SIGKILL)
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=600) == 0
    text = "".join(lines)
    assert "worker tuner0 exited with code -9; restarting it" in text
    records = [json.loads(l) for l in open(d / "search" / "trials.jsonl")]
    assert sorted(int(r["trial_id"]) for r in records) == [0, 1, 2]
    assert all(r["status"] == "COMPLETED" for r in records)


@pytest.mark.slow
def test_image_and_darts_trials_run_through_the_tuner(tmp_path):
    cnn = tune("simple_cnn", load_space(builtin_space_path("simple_cnn")), max_trials=2,
               directory=str(tmp_path / "cnn"), epochs_per_trial=2, objective="val_accuracy")
    assert [r["status"] for r in cnn.records] == ["COMPLETED"] * 2
    assert all(0 <= r["objective"] <= 1 for r in cnn.records)
    # A DARTS search per trial: the objective is the supernet's validation loss.
    darts = parse_space({"arch_learning_rate": {"type": "float", "min": 1e-4, "max": 1e-2,
                                                "log": True},
                         "layers": {"type": "fixed", "value": 2},
                         "init_channels": {"type": "fixed", "value": 4},
                         "steps": {"type": "fixed", "value": 1},
                         "multiplier": {"type": "fixed", "value": 1},
                         "batch_size": {"type": "fixed", "value": 16},
                         "max_steps_per_epoch": {"type": "fixed", "value": 2}})
    result = tune("darts_search", darts, max_trials=2, directory=str(tmp_path / "darts"),
                  epochs_per_trial=1)
    for r in result.records:
        assert r["status"] == "COMPLETED" and math.isfinite(r["objective"])
        assert r["epochs"]["val_loss"] == [pytest.approx(r["objective"])]
    first = sorted(result.records, key=lambda r: int(r["trial_id"]))[0]
    assert first["hyperparameters"]["arch_learning_rate"] == pytest.approx(10 ** (-4 + 2 / 3))


@pytest.mark.slow
def test_a_trial_under_a_mirrored_strategy_scores_as_on_one_device(tmp_path, mirrored_strategy):
    # No dropout: the trial is deterministic up to float summation order.
    space = parse_space({"learning_rate": {"type": "float", "min": 1e-3, "max": 1e-1,
                                           "log": True},
                         "units": {"type": "int", "min": 4, "max": 32},
                         "batch_size": {"type": "fixed", "value": 16}})
    one = tune("mlp", space, max_trials=2, directory=str(tmp_path / "one"), epochs_per_trial=5)
    two = tune("mlp", space, max_trials=2, directory=str(tmp_path / "two"), epochs_per_trial=5,
               strategy=mirrored_strategy)
    for a, b in zip(sorted(one.records, key=lambda r: r["trial_id"]),
                    sorted(two.records, key=lambda r: r["trial_id"])):
        assert a["hyperparameters"] == b["hyperparameters"]
        # Stated tolerance: 2 % of the validation loss after 5 epochs of Adam.
        assert b["objective"] == pytest.approx(a["objective"], rel=0.02)
        assert (a["strategy"], a["replicas"]) == ("default", 1)
        assert (b["strategy"], b["replicas"]) == ("MirroredStrategy", 2)
        assert [d[-5:] for d in b["devices"]] == ["CPU:0", "CPU:1"]


@pytest.mark.slow
def test_each_local_worker_gets_its_own_devices(tmp_path):
    # A host that shows four GPUs (faked: this machine has none, so each worker
    # falls back to its CPU split in two, mirrored).
    d = tmp_path / "tune"
    proc = run_bin("tune.py", "--max_trials=3", "--epochs_per_trial=1", "--workers=2",
                   "--devices_per_worker=2", f"--directory={d}",
                   env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(l) for l in open(d / "search" / "trials.jsonl")]
    seen = {r["tuner"]: r["visible_gpus"] for r in records}
    assert seen.get("tuner0", "0,1") == "0,1" and seen.get("tuner1", "2,3") == "2,3"
    assert len(seen) >= 1 and all(r["replicas"] == 2 for r in records)
    too_many = run_bin("tune.py", "--workers=2", "--devices_per_worker=2",
                       f"--directory={tmp_path / 'bad'}", env={"CUDA_VISIBLE_DEVICES": "0,1,2"})
    assert_one_line_error(too_many, "needs 4 GPUs; this host has 3 (0,1,2)")
    assert not (tmp_path / "bad").exists()


def test_median_stopping_stops_a_trial_behind_the_median_and_records_it(tmp_path):
    def curve(values, context):
        # Trial 3 lags far behind; trial 4 beats the median of trials 0-2.
        offset = {"0": 0.0, "1": 0.1, "2": 0.2, "3": 5.0, "4": 0.05}[context.trial_id]
        loss = None
        for epoch in range(1, context.epochs + 1):
            loss = offset + 1.0 / epoch
            if context.report(epoch, {"val_loss": loss, "val_accuracy": 0.5}):
                break
        return {"val_loss": loss, "val_accuracy": 0.5}

    result = tune(curve, SPACE, max_trials=5, directory=str(tmp_path), oracle="random",
                  epochs_per_trial=4, median_stopping=True)
    by_id = {r["trial_id"]: r for r in result.records}
    assert by_id["3"]["status"] == "STOPPED" and by_id["3"]["stopped_at_epoch"] == 2
    assert len(by_id["3"]["epochs"]["val_loss"]) == 2  # it trained no further
    assert by_id["3"]["objective"] == pytest.approx(5.5)  # its last epoch's value
    assert [by_id[k]["status"] for k in "0124"] == ["COMPLETED"] * 4  # the median itself goes on
    assert result.best_objective == pytest.approx(0.25)  # trial 0 at epoch 4


@pytest.mark.slow
def test_hyperband_gives_trials_epoch_budgets_that_they_train(tmp_path):
    result = tune("mlp", load_space(builtin_space_path("iris_mlp")), oracle="hyperband",
                  max_trials=6, epochs_per_trial=3, directory=str(tmp_path))
    assert len(result.records) == 6
    for r in result.records:
        assert r["status"] == "COMPLETED" and not any("tuner/" in k for k in r["hyperparameters"])
        assert len(r["epochs"]["val_loss"]) == r["hyperband"]["epochs"] in (1, 3)
    assert {r["hyperband"]["epochs"] for r in result.records} == {1, 3}


@pytest.mark.slow
def test_hyperband_with_median_stopping_resumes_after_a_kill(tmp_path):
    from conftest import kill_when_exists

    d = tmp_path / "tune"
    args = ["--oracle=hyperband", "--median_stopping", "--max_trials=8",
            "--epochs_per_trial=9", f"--directory={d}"]
    kill_when_exists("tune.py", args, str(d / "search" / "trial_3" / "trial.json"))
    before = [json.loads(l) for l in open(d / "search" / "trials.jsonl")]
    assert len(before) == 3
    proc = run_bin("tune.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(l) for l in open(d / "search" / "trials.jsonl")]
    assert records[:3] == before  # finished trials kept as they were
    assert sorted(int(r["trial_id"]) for r in records) == list(range(8))  # trial 3 rerun once
    assert all(r["status"] in ("COMPLETED", "STOPPED") for r in records)
    # Locally and with workers alike.
    workers = run_bin("tune.py", "--oracle=hyperband", "--median_stopping", "--max_trials=5",
                      "--epochs_per_trial=3", "--workers=2", f"--directory={tmp_path / 'w'}")
    assert workers.returncode == 0, workers.stderr[-3000:]
    records = [json.loads(l) for l in open(tmp_path / "w" / "search" / "trials.jsonl")]
    assert len(records) == 5 and all("hyperband" in r for r in records)
