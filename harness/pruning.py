"""Pruning rules: stop a losing trial early, so its slot goes to a better one.

Keras Tuner's oracles never stop a running trial (its `update_trial` leaves a TODO for it), so the
harness does it beside the oracle: each worker reports its objective after every epoch through
the job's `EpochChannel` (harness/channel.py), which asks the job's `Pruner` and answers
"continue" or "stop, because ...". The oracle then hears a pruned trial like any other, with the
best objective it reached, so Bayesian optimisation learns from it too.

ASHA's rungs may sit at a fraction of an epoch (`grace_epochs: 0.25`): the worker then
validates mid-epoch at those points (`mid_epoch_points`), so a hopeless draw costs a quarter of
an epoch instead of a whole one. Screening is where a search spends most of its trials.

ASHA has two ways to treat a trial at a rung (Li et al. 2020). By default it *stops* the ones
outside the top 1/factor of the trials recorded there so far (Ray Tune's ASHAScheduler): the
first trials at a rung always go on, unopposed, so on a small machine the first draws (the
default point among them) may train to the end before anything beats them. With
`promotion: true` it *promotes*, as the paper's Algorithm 2: a trial at a rung goes on only if it
is already in the top floor(n/factor) of the n trials recorded there; otherwise it pauses (its
weights are kept) and the driver continues it from them once it ranks there, before it draws a
new configuration (`Pruner.promotion`).

Mid-schedule, at a high learning rate, the score of a trial's last weights swings by points
from run to run; `rung_averaging` makes each rung rank the weights averaged over the way there
instead (harness/callbacks.py, `AveragedRungs`), which the rule hears like any rung's score.

Interface: `Pruner.report(trial_id, epochs_done, value) -> reason | None`; values are
"higher is better" (the channel flips a minimised objective); `epochs_done` is a whole number
of epochs, or a rung's fraction. `NoPruning` is the trivial rule.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from harness_core.schema import NumbersNotBooleans


class PruningSpec(NumbersNotBooleans):
    """`tuner.pruning` in a job file."""

    model_config = ConfigDict(extra="forbid")
    rule: Literal["none", "asha", "median"] = Field(
        "none",
        description="asha (asynchronous successive halving) or median (the median stopping "
        "rule); none runs every trial to the end and leaves the other options unused, so one "
        "override (a smoke run's) turns a job's pruning off",
    )
    grace_epochs: float = Field(
        1,
        gt=0,
        description="never stop a trial before this many epochs; ASHA takes a fraction (0.25: "
        "its first rung validates a quarter of the way through the first epoch)",
    )
    reduction_factor: int = Field(3, ge=2, description="ASHA: keep the top 1/factor per rung")
    min_trials: int = Field(3, ge=1, description="median rule: other trials needed to compare")
    promotion: bool = Field(
        False,
        description="ASHA: pause a trial at each rung until it ranks in the top 1/factor there, "
        "then continue it from its weights (instead of letting the first trials at a rung go on)",
    )
    promotion_min_trials: int | None = Field(
        None,
        ge=2,
        description="ASHA with promotion: how many trials a rung needs before its best goes on "
        "(default: the reduction factor, Algorithm 2's top floor(n/factor)); fewer lets the best "
        "of the first few go on at once, then the top max(1, floor(n/factor))",
    )
    promotion_leaders: bool = Field(
        False,
        description="ASHA with promotion: a trial at a rung still too small to rank (fewer than "
        "promotion_min_trials) goes on if it ranks first at the rung below, among at least that "
        "many, instead of pausing until others arrive",
    )
    rung_averaging: float = Field(
        0,
        ge=0,
        le=1,
        description="ASHA: rank a trial at a rung by the validation score of its weights "
        "averaged over this fraction of the way from the rung below (0.5: the last half), "
        "not by its last step's weights, which swing with a high learning rate mid-schedule; "
        "0 is off. The trial's own metrics stay its trained weights'",
    )
    anneal_at_rungs: bool = Field(
        False,
        description="ASHA: start the learning-rate schedule over at each rung (warm restarts), "
        "so that every stretch up to a rung warms up and anneals and the rung scores annealed "
        "weights, not weights mid-schedule; a constant rate is left as it is",
    )

    @model_validator(mode="after")
    def _whole_epochs_for_median(self) -> PruningSpec:
        if self.rule == "median" and self.grace_epochs != int(self.grace_epochs):
            raise ValueError(
                f"grace_epochs {self.grace_epochs:g} is a fraction of an epoch, which only ASHA's "
                "rungs take; the median rule compares whole epochs"
            )
        if self.promotion and self.rule == "median":  # with "none" nothing pauses: moot
            raise ValueError("promotion is a way of ASHA's; the median rule has none")
        if self.rung_averaging and self.rule == "median":
            raise ValueError("rung_averaging ranks at ASHA's rungs; the median rule has none")
        if self.anneal_at_rungs and self.rule == "median":
            raise ValueError("anneal_at_rungs anneals at ASHA's rungs; the median rule has none")
        for key in ("promotion_min_trials", "promotion_leaders"):
            if getattr(self, key) and self.rule == "median":
                raise ValueError(f"{key} is a way of ASHA's promotion; the median rule has none")
            if getattr(self, key) and not self.promotion and self.rule == "asha":
                raise ValueError(f"{key} needs promotion: true")
        return self


class Pruner:
    """Never stops a trial; subclasses decide from the values reported so far.

    `sign` is only for messages: values arrive as "higher is better" (a minimised objective
    negated), and reasons show them as the user's metric again.
    """

    sign: float = 1.0

    def report(self, trial_id: str, epochs_done: float, value: float) -> str | None:
        """Records `value` (higher is better) after `epochs_done` epochs of `trial_id`; returns
        why the trial should stop now, or None to let it go on. Reporting the same
        (trial, epochs_done) again (a retried attempt) replaces the earlier value."""
        return None

    def promotion(
        self, paused: dict[str, float], drawn_all: bool = False
    ) -> tuple[str, float] | None:
        """Which paused trial (trial id -> the rung it paused at) should continue now, and from
        which rung; None when none should (then the driver draws a new configuration).
        `drawn_all`: the oracle has no new configuration left (`max_trials`), so no more
        trials will come to the rungs."""
        return None


NoPruning = Pruner


class _BestSoFar:
    """Each trial's best value after each number of epochs (a retried attempt overwrites)."""

    def __init__(self):
        self.curves: dict[str, dict[float, float]] = defaultdict(dict)

    def add(self, trial_id: str, epochs_done: float, value: float) -> float:
        curve = self.curves[trial_id]
        curve[epochs_done] = value
        return self.at(trial_id, epochs_done)

    def at(self, trial_id: str, epochs_done: float) -> float | None:
        seen = [v for e, v in self.curves[trial_id].items() if e <= epochs_done]
        return max(seen) if seen else None


class ASHA(Pruner):
    """Asynchronous successive halving (Li et al. 2020, as Ray Tune's ASHAScheduler).

    Rungs sit at grace, grace*factor, grace*factor^2, ... epochs (below `max_epochs`); a rung
    may fall inside an epoch (grace 0.25, factor 3: 0.25, 0.75, 2.25). A trial reaching a rung
    goes on only if its best value so far is in the top 1/factor of all values recorded at that
    rung, itself included; the first trials at a rung always go on.
    """

    def __init__(self, max_epochs: int, grace_epochs: float = 1, reduction_factor: int = 3):
        self.factor = reduction_factor
        self.rungs = asha_rungs(max_epochs, grace_epochs, reduction_factor)
        self.curves = _BestSoFar()
        self.recorded: dict[float, dict[str, float]] = defaultdict(dict)

    def report(self, trial_id: str, epochs_done: float, value: float) -> str | None:
        best = self.curves.add(trial_id, epochs_done, value)
        if epochs_done not in self.rungs:
            return None
        rung = self.recorded[epochs_done]
        rung[trial_id] = best
        cutoff = _quantile(sorted(rung.values()), 1 - 1 / self.factor)
        if best < cutoff:
            return (
                f"ASHA: {self.sign * best:.4g} after {epochs_done:g} epochs is worse than the "
                f"top-1/{self.factor} cutoff {self.sign * cutoff:.4g} of the {len(rung)} trials "
                "at this rung"
            )
        return None


class PromotingASHA(ASHA):
    """ASHA with promotions (Li et al. 2020, Algorithm 2), for a driver that can continue a
    paused trial from its weights.

    At a rung holding n trials (itself included), a trial goes on at once only if it is in the
    top floor(n/factor) and was not continued from this rung already; otherwise it pauses. When a
    slot frees, `promotion` hands out the best paused trial that now ranks in the top
    floor(n/factor) of its rung, the highest rung first. So no trial trains past a rung until
    `factor` trials reached it, and a paused trial may still be continued later.

    `min_trials` below the factor (e.g. 2) shortens that wait: once a rung holds that many, its
    top max(1, floor(n/factor)) go on. With a quarter-epoch screen and factor 4, the 1-epoch
    rung fills slowly (16 screens for 4 trials); races on Fashion-MNIST lost 1-3 minutes there
    with the eventual winner paused at the top of a rung of 2 or 3 (docs/BENCHMARKS.md).
    `leaders` lets a trial at a rung still below `min_trials` go on when it ranks first at the
    rung below (among at least `min_trials`): on seed 4000 the first good draw waited alone at
    the 1-epoch rung for 2.6 minutes, having led the quarter-epoch rung.

    Once the oracle has drawn its last configuration (`max_trials`), no trial will come to
    rank a paused one against: `promotion(..., drawn_all=True)` then hands out the top
    max(1, floor(n/factor)) of each rung however few reached it, so free slots continue the
    best paused trials to the end instead of idling (a job of a few trials would otherwise end
    with every trial paused at a rung and none trained its whole schedule).
    """

    def __init__(
        self,
        max_epochs: int,
        grace_epochs: float = 1,
        reduction_factor: int = 3,
        min_trials: int | None = None,
        leaders: bool = False,
    ):
        super().__init__(max_epochs, grace_epochs, reduction_factor)
        self.min_trials = min_trials or reduction_factor
        self.leaders = leaders
        self.furthest: dict[str, float] = {}  # how far each trial got, in epochs
        self.taken: set[tuple[str, float]] = set()  # (trial, rung) continued past that rung

    def report(self, trial_id: str, epochs_done: float, value: float) -> str | None:
        best = self.curves.add(trial_id, epochs_done, value)
        for rung in self.rungs:  # a report past a rung: continued from it (a resume's replay)
            if rung < epochs_done:
                self.taken.add((trial_id, rung))
        self.furthest[trial_id] = max(self.furthest.get(trial_id, 0), epochs_done)
        if epochs_done not in self.rungs:
            return None
        self.recorded[epochs_done][trial_id] = best
        if trial_id in self._top(epochs_done) or self._leads_below(trial_id, epochs_done):
            self.taken.add((trial_id, epochs_done))
            return None
        rung = self.recorded[epochs_done]
        rank = sorted(rung.values(), reverse=True).index(best) + 1
        return (
            f"ASHA: paused at {epochs_done:g} epochs ({self.sign * best:.4g} ranks {rank} of "
            f"{len(rung)} there); it goes on once it ranks in the top 1/{self.factor}"
        )

    def promotion(
        self, paused: dict[str, float], drawn_all: bool = False
    ) -> tuple[str, float] | None:
        for rung in reversed(self.rungs):
            for trial_id in self._top(rung, 1 if drawn_all else self.min_trials):
                if (
                    paused.get(trial_id) == rung
                    and self.furthest.get(trial_id) == rung
                    and (trial_id, rung) not in self.taken
                ):
                    self.taken.add((trial_id, rung))
                    return trial_id, rung
        return None

    def _leads_below(self, trial_id: str, rung: float) -> bool:
        """With `leaders`: `rung` holds too few trials to rank, and `trial_id` ranks first at the
        rung below among at least `min_trials` (its value there as recorded)."""
        index = self.rungs.index(rung)
        if not self.leaders or index == 0 or len(self.recorded[rung]) >= self.min_trials:
            return False
        ranked = self._top(self.rungs[index - 1])  # empty while below `min_trials`
        return bool(ranked) and ranked[0] == trial_id

    def _top(self, rung: float, min_trials: int | None = None) -> list[str]:
        """The trials in the top max(1, floor(n/factor)) of the n recorded at `rung`, best
        first; none while n < `min_trials` (by default the factor: Algorithm 2's floor)."""
        records = self.recorded[rung]
        if len(records) < (min_trials or self.min_trials):
            return []
        ranked = sorted(records, key=lambda t: (-records[t], t))
        return ranked[: max(1, len(records) // self.factor)]


class MedianStopping(Pruner):
    """The median stopping rule (Golovin et al. 2017, Google Vizier): after `grace_epochs`, a
    trial stops when its best value so far is below the median of the other trials' best values
    after the same number of epochs, once `min_trials` others got that far."""

    def __init__(self, grace_epochs: int = 1, min_trials: int = 3):
        self.grace = grace_epochs
        self.min_trials = min_trials
        self.curves = _BestSoFar()

    def report(self, trial_id: str, epochs_done: float, value: float) -> str | None:
        best = self.curves.add(trial_id, epochs_done, value)
        if epochs_done < self.grace:
            return None
        others = [
            self.curves.at(other, epochs_done)
            for other, curve in self.curves.curves.items()
            if other != trial_id and max(curve) >= epochs_done
        ]
        if len(others) < self.min_trials:
            return None
        median = statistics.median(others)
        if best < median:
            return (
                f"median rule: {self.sign * best:.4g} after {epochs_done} epochs is worse than "
                f"the median {self.sign * median:.4g} of {len(others)} other trials"
            )
        return None


def asha_rungs(max_epochs: int, grace_epochs: float, reduction_factor: int) -> list[float]:
    """grace, grace*factor, ... below `max_epochs`, rounded so that the worker and the driver
    compute the same numbers (a rung is a dictionary key on both sides)."""
    rungs, rung = [], grace_epochs
    while rung < max_epochs:
        rungs.append(round(rung, 6))
        rung *= reduction_factor
    return rungs


def mid_epoch_points(spec: PruningSpec, max_epochs: int) -> list[float]:
    """The rungs that fall inside an epoch, where a trial's worker validates mid-epoch."""
    if spec.rule != "asha":
        return []
    return [r for r in asha_rungs(max_epochs, spec.grace_epochs, spec.reduction_factor) if r % 1]


def rung_step(point: float, steps_per_epoch: int) -> tuple[int, int]:
    """(epoch, step inside it) where a rung at `point` epochs falls: the step a worker validates
    after (`MidEpochCheck`) and a continued trial takes up from; step 0 for a whole epoch."""
    epoch = int(point)
    if point == epoch:
        return epoch, 0
    return epoch, min(max(1, round((point - epoch) * steps_per_epoch)), steps_per_epoch - 1)


def rung_steps(points, steps_per_epoch: int) -> dict[float, tuple[int, int]]:
    """(epoch, step) of each rung in `points` that can be scored (`rung_step`), in order: a
    fraction of an epoch of one step has no inside, so that rung is left out."""
    steps = {}
    for point in sorted(points):
        epoch, step = rung_step(point, steps_per_epoch)
        if point == epoch or step >= 1:
            steps[point] = (epoch, step)
    return steps


def restart_steps(spec: PruningSpec, max_epochs: int, steps_per_epoch: int) -> tuple[int, ...]:
    """With `anneal_at_rungs`: the steps (from a trial's start) where its schedule starts over,
    one at each ASHA rung, exactly where the rung validates (`rung_step`)."""
    if spec.rule != "asha" or not spec.anneal_at_rungs:
        return ()
    rungs = rung_steps(
        asha_rungs(max_epochs, spec.grace_epochs, spec.reduction_factor), steps_per_epoch
    )
    steps = {epoch * steps_per_epoch + step for epoch, step in rungs.values()}
    return tuple(sorted(s for s in steps if 0 < s < max_epochs * steps_per_epoch))


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default method)."""
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


PRUNERS: dict[str, Callable[[PruningSpec, int], Pruner]] = {
    "none": lambda spec, max_epochs: NoPruning(),
    "asha": lambda spec, max_epochs: (
        PromotingASHA(
            max_epochs,
            spec.grace_epochs,
            spec.reduction_factor,
            spec.promotion_min_trials,
            spec.promotion_leaders,
        )
        if spec.promotion
        else ASHA(max_epochs, spec.grace_epochs, spec.reduction_factor)
    ),
    "median": lambda spec, max_epochs: MedianStopping(spec.grace_epochs, spec.min_trials),
}


def make_pruner(spec: PruningSpec, max_epochs: int, direction: str = "max") -> Pruner:
    pruner = PRUNERS[spec.rule](spec, max_epochs)
    pruner.sign = 1.0 if direction == "max" else -1.0
    return pruner
