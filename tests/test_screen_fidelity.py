"""`benchmarks/screen_fidelity.py`'s summary: each rung's rank correlation with the final
scores, where it ranks the best final run, and what the restarts cost at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import screen_fidelity  # noqa: E402


def run(plain: list[float], restarts: list[float]) -> dict:
    points = [0.25, 1, 2]
    return {
        "plain": {"scores": list(zip(points, plain, strict=True))},
        "restarts": {"scores": list(zip(points, restarts, strict=True))},
    }


def test_the_summary_ranks_each_rung_against_the_final_scores():
    runs = [
        run([0.70, 0.80, 0.90], [0.60, 0.85, 0.91]),  # the best at the end
        run([0.75, 0.82, 0.85], [0.55, 0.80, 0.84]),  # led the plain rungs, second at the end
        run([0.50, 0.60, 0.70], [0.50, 0.62, 0.69]),
    ]
    summary = screen_fidelity.summarize(runs, [0.25, 1, 2])
    plain = summary["plain at 1 epochs"]
    assert plain["spearman_vs_plain_final"] == pytest.approx(0.5)
    assert plain["rank_of_best_plain_final"] == 2
    annealed = summary["restarts at 1 epochs"]
    assert annealed["spearman_vs_plain_final"] == pytest.approx(1.0)
    assert annealed["rank_of_best_plain_final"] == 1
    assert annealed["spearman_vs_own_final"] == pytest.approx(1.0)
    assert "plain at 2 epochs" not in summary  # the end is not a rung
    cost = summary["restarts final - plain final"]
    assert cost["each"] == pytest.approx([0.01, -0.01, -0.01])
    assert cost["mean"] == pytest.approx(-0.01 / 3)
    assert cost["best_of_each"] == pytest.approx([0.91, 0.90])


def test_a_loss_objective_ranks_the_lowest_first():
    runs = [
        run([0.9, 0.5, 0.30], [0.8, 0.4, 0.31]),  # the best (lowest) at the end
        run([0.7, 0.6, 0.40], [0.9, 0.7, 0.45]),
    ]
    summary = screen_fidelity.summarize(runs, [0.25, 1, 2], direction="min")
    assert summary["plain at 0.25 epochs"]["rank_of_best_plain_final"] == 2
    assert summary["plain at 1 epochs"]["rank_of_best_plain_final"] == 1
    assert summary["restarts final - plain final"]["best_of_each"] == pytest.approx([0.31, 0.30])


@pytest.mark.parametrize("text", ["0.25,1", "1", "0.5, 2.5"])
def test_rungs_inside_the_schedule_are_taken(text):
    assert screen_fidelity.parse_rungs(text, 3, 100) == [float(r) for r in text.split(",")]


@pytest.mark.parametrize("text", ["", "0", "3", "5", "-1", "inf", "nan", "abc", "0.25", "1,0.5"])
def test_rungs_outside_the_schedule_or_between_steps_are_refused(text):
    # 3 epochs of 1 step: a fraction has no step of its own; the last epoch is no rung.
    per_epoch = 1 if text in ("0.25", "1,0.5") else 100
    with pytest.raises(ValueError, match="each rung must be a number of epochs inside the 3"):
        screen_fidelity.parse_rungs(text, 3, per_epoch)
