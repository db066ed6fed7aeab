"""The export's refit under a time budget (`export.retrain_time_budget_s`)."""

from __future__ import annotations

import keras_tuner as kt
from rich.console import Console

from harness.export import _retrain, refit_line
from harness.job import validate_job
from harness.space import make_hypermodel
from pipelines import PIPELINES
from tests.conftest import tiny_job
from tests.helpers.hypermodels import SlowCNN


def refit(tmp_path, monkeypatch, delays, budget, epochs=200, space="SlowCNN"):
    monkeypatch.setattr(SlowCNN, "delays", delays)
    monkeypatch.setattr(SlowCNN, "calls", 0)
    spec = validate_job(
        tiny_job(
            tmp_path,
            search_space={"name": f"tests.helpers.hypermodels:{space}"},
            export={"retrain": True, "retrain_epochs": epochs, "retrain_time_budget_s": budget},
        )
    )
    pipeline = PIPELINES.get(spec.data.pipeline)(spec.data)
    hp = kt.HyperParameters()
    hypermodel = make_hypermodel(spec, pipeline.describe(hp))
    model, record = _retrain(spec, pipeline, hypermodel, hp, {"best_step": 3}, Console(quiet=True))
    return model, record


def test_a_refit_trains_the_epochs_its_time_budget_holds(tmp_path, data_dir, monkeypatch):
    # 18 steps an epoch at >= 50 ms: 200 epochs take minutes, 20 s holds a handful (timing
    # and tracing take 3-7 s of it, the more the busier the machine).
    model, record = refit(tmp_path, monkeypatch, [0.05], budget=20)
    assert record["epochs_wanted"] == 200
    assert 2 <= record["epochs"] < 20
    assert record["step_s"] >= 0.05
    # The plan fit: the schedule ran whole, or all but its last epoch on a busy machine.
    trained = record.get("stopped_after_epoch", record["epochs"])
    assert trained >= record["epochs"] - 1
    assert record["duration_s"] <= 20 + 1.5
    assert model.optimizer.iterations.numpy() == trained * 18


def test_a_refit_slower_than_timed_stops_before_its_budget(tmp_path, data_dir, monkeypatch):
    # Timed at 5 ms a step, then 150 ms: the plan overshoots and the refit ends early.
    _, record = refit(tmp_path, monkeypatch, [0.005, 0.15], budget=14)
    assert record["stopped_after_epoch"] < record["epochs"]
    assert record["duration_s"] <= 14 + 1.5
    card = refit_line(record)
    assert f"stopped after epoch {record['stopped_after_epoch']} at its time budget" in card


def test_a_phased_refit_stops_in_its_first_phase_for_good(tmp_path, data_dir, monkeypatch):
    """A space training in two `model.fit` calls (transfer learning) goes on to its second
    phase when a callback stops the first: the budget's stop holds there too, after a step."""
    # Each phase is a call of SlowCNN.fit: the timing's two at 5 ms a step, the refit's at 150.
    delays = [0.005, 0.005, 0.15]
    model, record = refit(tmp_path, monkeypatch, delays, budget=14, space="PhasedSlowCNN")
    stopped = record["stopped_after_epoch"]
    assert stopped < (record["epochs"] + 1) // 2  # inside the first phase
    assert record["duration_s"] <= 14 + 1.5
    assert model.optimizer.iterations.numpy() <= stopped * 18 + 1  # at most one step more


def test_a_refit_budget_without_a_refit_is_unused(tmp_path):
    """`--set export.retrain=false` on a job with a refit budget (time_to_accuracy.py's
    commands) validates: the budget has nothing to bound."""
    spec = validate_job(tiny_job(tmp_path, export={"retrain_time_budget_s": 600}))
    assert not spec.export.retrain and spec.export.retrain_time_budget_s == 600
