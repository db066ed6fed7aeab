"""Pruning rules on hand-fed values (as Ray Tune tests its schedulers with mock trials)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.channel import EpochChannel
from harness.pruning import (
    ASHA,
    MedianStopping,
    NoPruning,
    PruningSpec,
    make_pruner,
    mid_epoch_points,
)


def test_asha_rungs_follow_grace_and_factor():
    assert ASHA(max_epochs=27, grace_epochs=1, reduction_factor=3).rungs == [1, 3, 9]
    assert ASHA(max_epochs=10, grace_epochs=2, reduction_factor=2).rungs == [2, 4, 8]


def test_asha_keeps_the_top_third_at_a_rung():
    asha = ASHA(max_epochs=9, grace_epochs=1, reduction_factor=3)
    assert asha.report("a", 1, 0.80) is None  # first at the rung: always continues
    assert asha.report("b", 1, 0.90) is None  # better than the cutoff so far
    reason = asha.report("c", 1, 0.50)  # worst of three: below the top-1/3 cutoff
    assert reason and "ASHA" in reason and "0.5" in reason
    assert asha.report("c", 2, 0.99) is None  # between rungs nothing is decided


def test_asha_uses_best_so_far_not_last_epoch():
    asha = ASHA(max_epochs=9, grace_epochs=1, reduction_factor=3)
    for trial, value in (("a", 0.7), ("b", 0.8)):
        asha.report(trial, 1, value)
        asha.report(trial, 2, value)
        asha.report(trial, 3, value)
    asha.report("c", 1, 0.95)
    asha.report("c", 2, 0.10)  # a bad last epoch, but its best so far is the best of all
    assert asha.report("c", 3, 0.10) is None


def test_median_rule_waits_for_enough_trials_then_stops_below_median():
    rule = MedianStopping(grace_epochs=2, min_trials=2)
    for trial, value in (("a", 0.8), ("b", 0.9)):
        for epoch in (1, 2, 3):
            assert rule.report(trial, epoch, value) is None
    assert rule.report("c", 1, 0.1) is None  # inside the grace period
    reason = rule.report("c", 2, 0.1)
    assert reason and "median" in reason and "0.85" in reason
    assert rule.report("d", 2, 0.95) is None


def test_median_rule_compares_only_with_trials_that_got_as_far():
    rule = MedianStopping(grace_epochs=1, min_trials=2)
    rule.report("a", 1, 0.9)
    rule.report("b", 1, 0.9)
    assert rule.report("c", 2, 0.1) is None  # nobody else reached 2 epochs


def test_retried_attempt_overwrites_its_values():
    asha = ASHA(max_epochs=9, grace_epochs=1, reduction_factor=2)
    asha.report("a", 1, 0.9)
    asha.report("b", 1, 0.1)
    asha.report("b", 1, 0.95)  # the retried attempt did better: its value replaces the old
    assert asha.recorded[1] == {"a": 0.9, "b": 0.95}


def test_channel_flips_a_minimised_objective_and_shows_user_values():
    pruner = make_pruner(PruningSpec(rule="asha"), max_epochs=9, direction="min")
    channel = EpochChannel(pruner, "val_loss", "min")
    assert channel.report("a", 0, {"val_loss": 0.3}) is None
    assert channel.report("b", 0, {"val_loss": 0.2}) is None
    reason = channel.report("c", 0, {"val_loss": 0.9})
    assert reason and "0.9 after 1 epochs" in reason  # the user's value, not its negation
    assert [r["trial_id"] for r in channel.drain()] == ["a", "b", "c"]
    assert channel.drain() == []


def test_channel_ignores_reports_without_a_finite_objective():
    channel = EpochChannel(make_pruner(PruningSpec(rule="asha"), 9), "val_accuracy", "max")
    assert channel.report("a", 0, {"loss": 1.0}) is None
    assert channel.report("a", 0, {"val_accuracy": float("nan")}) is None


def test_seed_replays_finished_trials():
    channel = EpochChannel(make_pruner(PruningSpec(rule="asha"), 9), "val_accuracy", "max")
    channel.seed({"0": [(1, 0.9), (2, 0.91)], "1": [(1, 0.88)]})
    assert "ASHA" in channel.report("2", 0, {"val_accuracy": 0.5})


@pytest.mark.parametrize(
    "rule, cls", [("none", NoPruning), ("asha", ASHA), ("median", MedianStopping)]
)
def test_make_pruner_by_name(rule, cls):
    assert type(make_pruner(PruningSpec(rule=rule), 9)) is cls


def test_asha_rungs_may_sit_inside_an_epoch():
    asha = ASHA(max_epochs=4, grace_epochs=0.25, reduction_factor=3)
    assert asha.rungs == [0.25, 0.75, 2.25]
    spec = PruningSpec(rule="asha", grace_epochs=0.25, reduction_factor=3)
    assert mid_epoch_points(spec, 4) == [0.25, 0.75, 2.25]
    # Whole-number rungs are decided at epoch ends, as before.
    half = PruningSpec(rule="asha", grace_epochs=0.5, reduction_factor=2)
    assert ASHA(4, 0.5, 2).rungs == [0.5, 1, 2] and mid_epoch_points(half, 4) == [0.5]
    assert mid_epoch_points(PruningSpec(rule="asha"), 9) == []
    assert mid_epoch_points(PruningSpec(rule="none", grace_epochs=0.5), 9) == []


def test_median_rule_refuses_a_fraction_of_an_epoch():
    with pytest.raises(ValidationError, match="fraction of an epoch"):
        PruningSpec(rule="median", grace_epochs=0.5)
    with pytest.raises(ValidationError):
        PruningSpec(rule="asha", grace_epochs=0)


def test_channel_check_decides_at_a_rung_inside_an_epoch_without_queueing_it():
    spec = PruningSpec(rule="asha", grace_epochs=0.25, reduction_factor=3)
    channel = EpochChannel(make_pruner(spec, 4), "val_accuracy", "max")
    assert channel.check("a", 0.25, {"val_accuracy": 0.8}) is None
    assert channel.check("b", 0.25, {"val_accuracy": 0.9}) is None
    reason = channel.check("c", 0.25, {"val_accuracy": 0.3})
    assert reason and "after 0.25 epochs" in reason and channel.stopped == {"c": reason}
    assert channel.drain() == []  # live progress shows whole epochs only
    # A whole epoch is no rung here: nothing is decided at epoch ends.
    assert channel.report("d", 0, {"val_accuracy": 0.1}) is None


def test_seed_replays_mid_epoch_checks():
    spec = PruningSpec(rule="asha", grace_epochs=0.5, reduction_factor=2)
    channel = EpochChannel(make_pruner(spec, 4), "val_accuracy", "max")
    channel.seed({"0": [(1, 0.9), (0.5, 0.8)], "1": [(1, 0.7), (0.5, 0.6)]})
    assert "ASHA" in channel.check("2", 0.5, {"val_accuracy": 0.5})
