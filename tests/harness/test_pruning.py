"""Pruning rules on hand-fed values (as Ray Tune tests its schedulers with mock trials)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.channel import EpochChannel
from harness.pruning import (
    ASHA,
    MedianStopping,
    NoPruning,
    PromotingASHA,
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


def test_rung_averaging_is_asha_s():
    with pytest.raises(ValidationError, match="rung_averaging ranks at ASHA's rungs"):
        PruningSpec(rule="median", rung_averaging=0.5)
    with pytest.raises(ValidationError):
        PruningSpec(rule="asha", rung_averaging=1.5)
    assert PruningSpec(rule="none", rung_averaging=0.5).rung_averaging == 0.5  # a smoke run


def test_channel_ranks_what_the_worker_averaged_and_shows_the_epoch():
    spec = PruningSpec(rule="asha", grace_epochs=1, reduction_factor=2)
    channel = EpochChannel(make_pruner(spec, 4), "val_accuracy", "max")
    assert channel.report("a", 0, {"val_accuracy": 0.9}, {"val_accuracy": 0.5}) is None
    reason = channel.report("b", 0, {"val_accuracy": 0.3}, {"val_accuracy": 0.4})
    assert reason and "0.4 after 1 epochs" in reason  # ranked 0.4 against 0.5, not 0.3 / 0.9
    assert [r["metrics"]["val_accuracy"] for r in channel.drain()] == [0.9, 0.3]


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


def test_promoting_asha_pauses_until_a_trial_ranks_in_the_top_of_its_rung():
    asha = make_pruner(PruningSpec(rule="asha", promotion=True, reduction_factor=3), 9)
    assert type(asha) is PromotingASHA and asha.rungs == [1, 3]
    # The first two at a rung cannot rank in the top floor(n/3) = 0: both pause (the stopping
    # rule would let them go on unopposed).
    assert "paused at 1 epochs" in asha.report("a", 1, 0.80)
    assert "ranks 1 of 2" in asha.report("b", 1, 0.90)
    assert asha.promotion({"a": 1, "b": 1}) is None
    # A third, best of three, goes on at once; "b" is second, so nobody is promoted yet.
    assert asha.report("c", 1, 0.95) is None
    assert asha.promotion({"a": 1, "b": 1}) is None
    assert "paused" in asha.report("d", 1, 0.50)
    assert "paused" in asha.report("e", 1, 0.85)
    # Six at the rung: the top 2 are c (running on) and b (paused): b is continued, once.
    assert asha.report("f", 1, 0.10)
    assert asha.promotion({"a": 1, "b": 1, "d": 1, "e": 1, "f": 1}) == ("b", 1)
    assert asha.promotion({"a": 1, "d": 1, "e": 1, "f": 1}) is None
    assert asha.promotion({"a": 1, "b": 1, "d": 1, "e": 1, "f": 1}) is None  # handed out


def test_promoting_asha_continues_the_highest_rung_first():
    asha = PromotingASHA(max_epochs=9, grace_epochs=1, reduction_factor=2)  # rungs 1, 2, 4, 8
    for trial, value in [("a", 0.9), ("b", 0.8), ("c", 0.1), ("d", 0.2)]:
        assert "paused" in asha.report(trial, 1, value)  # each behind the top floor(n/2)
    assert asha.promotion({"a": 1, "b": 1, "c": 1, "d": 1}) == ("a", 1)
    assert "paused" in asha.report("a", 2, 0.95)  # alone at rung 2
    assert asha.promotion({"a": 2, "b": 1, "c": 1, "d": 1}) == ("b", 1)  # top 2 of 4
    assert "paused" in asha.report("b", 2, 0.70)
    # Rung 2 now has a top 1 ("a"): it goes before anything at rung 1.
    assert asha.promotion({"a": 2, "b": 2, "c": 1, "d": 1}) == ("a", 2)
    assert asha.promotion({"b": 2, "c": 1, "d": 1}) is None


def test_promoting_asha_ranks_any_rung_once_the_oracle_has_drawn_all():
    """With no new configuration to come, a rung of fewer than `min_trials` still hands out
    its top max(1, floor(n/factor)): the best paused trials go on instead of slots idling."""
    asha = PromotingASHA(max_epochs=9, grace_epochs=1, reduction_factor=3)  # rungs 1, 3
    assert "paused" in asha.report("a", 1, 0.8)
    assert "paused" in asha.report("b", 1, 0.9)
    assert asha.promotion({"a": 1, "b": 1}) is None  # 2 < 3: Algorithm 2 waits for a third
    assert asha.promotion({"a": 1, "b": 1}, drawn_all=True) == ("b", 1)
    assert asha.promotion({"a": 1}, drawn_all=True) is None  # not in the top 1 of 2
    assert "paused" in asha.report("b", 3, 0.91)  # alone at rung 3
    assert asha.promotion({"a": 1, "b": 3}, drawn_all=True) == ("b", 3)


def test_promoting_asha_after_a_resume_does_not_continue_a_trial_twice():
    """Seeded with finished trials' curves, a trial that already went past a rung is not
    handed out from it again."""
    asha = PromotingASHA(max_epochs=9, grace_epochs=1, reduction_factor=3)
    channel = EpochChannel(asha, "val_accuracy", "max")
    channel.seed({"a": [(1, 0.9), (2, 0.91), (3, 0.92)], "b": [(1, 0.5)], "c": [(1, 0.6)]})
    assert asha.promotion({"b": 1, "c": 1}) is None  # "a" is the top 1 of 3 and went on
    assert channel.promotion({"a": 3, "b": 1, "c": 1}) is None  # 1 at rung 3: none on top
    assert asha.report("d", 1, 0.95) is None  # top 1 of 4: goes on at once


def test_promotion_is_only_asha_s():
    with pytest.raises(ValidationError, match="promotion is a way of ASHA"):
        PruningSpec(rule="median", promotion=True)
    assert NoPruning().promotion({"a": 1}) is None
    # A variant that turns pruning off (a job's smoke section) keeps the flag harmlessly.
    assert type(make_pruner(PruningSpec(rule="none", promotion=True), 9)) is NoPruning


def test_promotion_min_trials_lets_the_best_of_a_small_rung_go_on():
    spec = PruningSpec(rule="asha", promotion=True, reduction_factor=4, promotion_min_trials=2)
    asha = make_pruner(spec, 4)
    assert asha.rungs == [1]
    assert "paused at 1 epochs" in asha.report("a", 1, 0.80)  # alone: not yet
    assert asha.report("b", 1, 0.90) is None  # best of 2: goes on at once
    assert "ranks 2 of 3" in asha.report("c", 1, 0.85)  # top max(1, 3 // 4) = 1 is "b"
    assert asha.promotion({"a": 1, "c": 1}) is None
    assert "paused" in asha.report("d", 1, 0.70)
    assert asha.report("e", 1, 0.95) is None  # best of 5: top 1 is itself
    for trial, value in [("f", 0.1), ("g", 0.2), ("h", 0.3)]:
        asha.report(trial, 1, value)
    # 8 at the rung: the top 2 are e (went on) and b (went on): nobody paused ranks there.
    assert asha.promotion({"a": 1, "c": 1, "d": 1, "f": 1, "g": 1, "h": 1}) is None
    assert asha.report("i", 1, 0.99) is None
    assert asha.report("j", 1, 0.05) is not None
    assert asha.report("k", 1, 0.06) is not None
    assert asha.report("l", 1, 0.07) is not None
    # 12 at the rung, top 3: i, e, b. Still none of the paused.
    assert asha.promotion({"a": 1, "c": 1, "d": 1}) is None
    # The default, min_trials = factor, is Algorithm 2: a rung of 3 promotes none.
    plain = make_pruner(PruningSpec(rule="asha", promotion=True, reduction_factor=4), 4)
    for trial, value in [("a", 0.8), ("b", 0.9), ("c", 0.85)]:
        assert "paused" in plain.report(trial, 1, value)
    with pytest.raises(ValidationError, match="promotion_min_trials needs promotion: true"):
        PruningSpec(rule="asha", promotion_min_trials=2)


def test_promotion_leaders_lets_the_leader_of_the_rung_below_go_on():
    """Seed 4000's race: the better of the first two at the quarter-epoch rung reached the
    1-epoch rung alone and waited there; with `promotion_leaders` it goes on."""
    spec = PruningSpec(
        rule="asha",
        grace_epochs=0.25,
        reduction_factor=4,
        promotion=True,
        promotion_min_trials=2,
        promotion_leaders=True,
    )
    asha = make_pruner(spec, 4)
    assert asha.rungs == [0.25, 1]
    assert "paused" in asha.report("a", 0.25, 0.72)  # alone at the first rung: no rung below
    assert asha.report("b", 0.25, 0.80) is None  # best of 2
    assert asha.report("b", 1, 0.85) is None  # alone at 1 epoch, but led the rung below
    assert "paused" in asha.report("c", 0.25, 0.60)
    assert asha.report("d", 0.25, 0.82) is None  # top 1 of 4 at the quarter rung
    # The 1-epoch rung holds 2 now: ranking applies there, not leadership below.
    assert "ranks 2 of 2" in asha.report("d", 1, 0.81)  # its best so far, 0.82, vs 0.85
    # Without the option, "b" waits alone at the 1-epoch rung.
    spec.promotion_leaders = False
    plain = make_pruner(spec, 4)
    plain.report("a", 0.25, 0.72)
    plain.report("b", 0.25, 0.80)
    assert "paused at 1 epochs" in plain.report("b", 1, 0.85)
    with pytest.raises(ValidationError, match="promotion_leaders needs promotion: true"):
        PruningSpec(rule="asha", promotion_leaders=True)
    for key, value in (("promotion_leaders", True), ("promotion_min_trials", 2)):
        with pytest.raises(ValidationError, match=f"{key} is a way of ASHA's promotion"):
            PruningSpec(rule="median", **{key: value})
    PruningSpec(rule="none", promotion=True, promotion_leaders=True)  # pruning off: unused


def test_promotion_leaders_needs_a_rung_below_with_enough_trials():
    asha = PromotingASHA(4, 0.25, 4, min_trials=3, leaders=True)
    asha.report("a", 0.25, 0.9)
    asha.report("b", 0.25, 0.8)  # the quarter rung holds 2 < 3: it leads nothing yet
    assert "paused" in asha.report("a", 1, 0.85)


def test_rung_steps_places_each_scorable_rung_and_leaves_out_the_rest():
    from harness.pruning import rung_steps

    assert rung_steps([1, 0.25, 2.5], 100) == {0.25: (0, 25), 1: (1, 0), 2.5: (2, 50)}
    assert list(rung_steps([1, 0.25], 100)) == [0.25, 1]  # in order
    assert rung_steps([0.001, 0.999], 10) == {0.001: (0, 1), 0.999: (0, 9)}  # inside the epoch
    # One step an epoch: a fraction has no step of its own; whole epochs stay.
    assert rung_steps([0.25, 1, 1.5, 2], 1) == {1: (1, 0), 2: (2, 0)}


def test_anneal_at_rungs_restarts_the_schedule_where_each_rung_validates():
    from harness.pruning import restart_steps

    spec = PruningSpec(rule="asha", grace_epochs=0.25, reduction_factor=4, anneal_at_rungs=True)
    assert restart_steps(spec, 4, 100) == (25, 100)  # rungs at 0.25 and 1 epoch
    assert restart_steps(spec, 4, 3) == (1, 3)  # a quarter of 3 steps: the rung's step 1
    assert restart_steps(spec, 1, 100) == (25,)  # no rung at the end of the schedule
    # An epoch of one step has no inside: the quarter rung is never scored, so no restart
    # there; the whole-epoch rung keeps its.
    assert restart_steps(spec, 4, 1) == (1,)
    assert restart_steps(spec.model_copy(update={"anneal_at_rungs": False}), 4, 100) == ()
    assert restart_steps(PruningSpec(rule="none", anneal_at_rungs=True), 4, 100) == ()
    with pytest.raises(ValidationError, match="anneal_at_rungs anneals at ASHA's rungs"):
        PruningSpec(rule="median", anneal_at_rungs=True)
