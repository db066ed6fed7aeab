"""The tpe algorithm (Optuna's TPESampler behind a Keras Tuner oracle) in the trial loop, with
scripted trials (FakeExecutor): what it proposes, how it reads pruned trials, and resumes."""

from __future__ import annotations

import math
import statistics

import keras_tuner as kt
import optuna

from harness.oracles import _as_optuna, make_oracle, pruned_epochs
from tests.harness.test_loop import climb, climb_on, make_loop


def qualities(executor) -> list[float]:
    return [r["hyperparameters"]["values"]["quality"] for r in executor.submitted]


def test_tpe_starts_with_the_random_draws_then_proposes_where_the_objective_is_high(tmp_path):
    random_loop, random_run = make_loop(tmp_path / "random", climb, max_trials=30, epochs=3)
    random_loop.run()
    loop, executor = make_loop(tmp_path / "tpe", climb, algorithm="tpe", max_trials=30, epochs=3)
    outcome = loop.run()
    assert outcome.completed == 30
    random_q, tpe_q = qualities(random_run), qualities(executor)
    # Its 10 initial points are Keras Tuner's random draws (the default point first).
    assert tpe_q[:10] == random_q[:10] and tpe_q[0] == 0.5
    # Then it proposes near the high end of `quality`, where random search stays uniform.
    assert statistics.mean(tpe_q[10:]) > 0.75 > statistics.mean(random_q[10:]) + 0.1
    assert max(tpe_q) > max(random_q[:10])


def conditional_space() -> kt.HyperParameters:
    space = kt.HyperParameters()
    space.Choice("optimizer", ["sgd", "adam"], default="sgd")
    with space.conditional_scope("optimizer", ["sgd"]):
        space.Float("sgd_lr", 1e-3, 1.0, sampling="log", default=0.01)
    with space.conditional_scope("optimizer", ["adam"]):
        space.Float("adam_lr", 1e-5, 1e-1, sampling="log", default=1e-3)
    space.Int("units", 16, 256, step=16, default=64)
    return space


def lr_peak(request):
    """Adam near 3e-3 is the best region; SGD tops out at 0.6; units do not matter."""
    values = request["hyperparameters"]["values"]
    if values["optimizer"] == "adam":
        quality = 0.95 - 0.3 * abs(math.log10(values["adam_lr"] / 3e-3))
    else:
        quality = 0.6 - 0.2 * abs(math.log10(values["sgd_lr"] / 0.1))
    for _ in range(request["job"]["tuner"]["epochs"]):
        yield {"loss": 1.0, "val_accuracy": max(quality, 0.05)}


def test_tpe_proposes_only_active_values_and_learns_the_better_branch(tmp_path):
    loop, executor = make_loop(
        tmp_path, lr_peak, space=conditional_space(), algorithm="tpe", max_trials=40, epochs=1
    )
    loop.run()
    proposals = [r["hyperparameters"]["values"] for r in executor.submitted]
    for values in proposals:
        lr = "adam_lr" if values["optimizer"] == "adam" else "sgd_lr"
        assert set(values) == {"optimizer", lr, "units"}
        assert values["units"] % 16 == 0 and 16 <= values["units"] <= 256  # Keras Tuner's steps
    later = proposals[10:]
    adam = [v for v in later if v["optimizer"] == "adam"]
    assert len(adam) >= 0.75 * len(later)
    # On Keras Tuner's log scale: most Adam proposals within a factor of 5 of the peak.
    near = [v for v in adam if abs(math.log10(v["adam_lr"] / 3e-3)) < math.log10(5)]
    assert len(near) >= 0.6 * len(adam)


def test_tpe_reads_paused_trials_as_pruned_at_the_epochs_they_reached(tmp_path):
    pruning = {"rule": "asha", "grace_epochs": 1, "reduction_factor": 3, "promotion": True}
    loop, _ = make_loop(tmp_path, climb_on, algorithm="tpe", max_trials=14, pruning=pruning)
    outcome = loop.run()
    assert outcome.pruned > 0 and outcome.completed >= 1
    trials = list(loop.oracle.trials.values())
    for trial in trials:
        state, score, step = _as_optuna(trial)
        epochs = pruned_epochs(trial)
        if epochs is None:
            assert (state, step) == ("COMPLETE", 0)
        else:
            assert state == "PRUNED" and step == round(epochs * 1000) and epochs in (1, 3)
        assert score == trial.score
    study = loop.oracle._synced_study(optuna)
    held = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(held) == len(trials)
    for frozen in held:
        if frozen.state.name == "PRUNED":
            assert frozen.last_step in (1000, 3000)


def test_a_resumed_tpe_oracle_proposes_what_the_running_one_would(tmp_path):
    loop, _ = make_loop(
        tmp_path, lr_peak, space=conditional_space(), algorithm="tpe", max_trials=16, epochs=1
    )
    loop.run()
    reloaded = make_oracle(loop.spec.tuner, loop.job_dir)  # from the job directory's state
    reloaded.update_space(conditional_space())
    assert len(reloaded.trials) == 16
    assert reloaded.populate_space("16") == loop.oracle.populate_space("16")


def test_the_study_keeps_the_start_order_when_trial_ids_change_width(tmp_path):
    # Keras Tuner pads trial ids to max_trials' width, so raising max_trials between two runs of
    # a job (a resumable change) gives "0".."8" then "09".."13": "09" sorts before "1".
    loop, _ = make_loop(
        tmp_path, lr_peak, space=conditional_space(), algorithm="tpe", max_trials=9, epochs=1
    )
    loop.run()
    loop.oracle.max_trials = loop.spec.tuner.max_trials = 14
    loop.run()
    order = loop.oracle.start_order
    assert len(order) == 14 and sorted(order) != order
    space = {hp.name: hp for hp in conditional_space().space}
    study = loop.oracle._synced_study(optuna)
    held = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    for frozen, trial_id in zip(held, order, strict=True):
        values = loop.oracle.trials[trial_id].hyperparameters.values
        assert set(frozen.params) == set(values)
        for name, value in values.items():
            stored = frozen.params[name]
            if name == "optimizer":
                assert stored == value
            else:
                assert math.isclose(space[name].prob_to_value(stored), value, rel_tol=1e-9)
