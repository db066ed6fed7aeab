"""The per-epoch channel between running trials and the driver.

Workers call `report` after every epoch (and `check` at a pruning rung inside an epoch); the
channel asks the job's pruner and answers with a reason to stop (or None), and queues the
report for the driver, which `drain`s it for live progress. Under Ray the channel is one
actor of the job (`RayExecutor` creates it; a worker on any node reaches it through its
handle); the in-process `FakeExecutor` uses the same class directly. Nothing here imports
Ray or TensorFlow.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.pruning import Pruner, make_pruner

if TYPE_CHECKING:
    from harness.job import JobSpec


class EpochChannel:
    """Decides on and records per-epoch reports for one job.

    Args:
        pruner: The job's pruning rule.
        objective: The objective's metric name, e.g. `val_accuracy`.
        direction: `max` or `min`; the pruner always sees "higher is better".
    """

    def __init__(self, pruner: Pruner, objective: str, direction: str):
        self.pruner = pruner
        self.objective = objective
        self.direction = direction
        self.sign = 1.0 if direction == "max" else -1.0
        self.pending: list[dict[str, Any]] = []
        self.stopped: dict[str, str] = {}

    def seed(self, curves: dict[str, list[tuple[int, float]]]) -> None:
        """Replays finished trials' objective curves (epochs done, value) after a resume, so the
        rules compare new trials with the earlier ones too."""
        for trial_id, curve in curves.items():
            for epochs_done, value in curve:
                if math.isfinite(value):
                    self.pruner.report(trial_id, epochs_done, self.sign * value)

    def report(
        self,
        trial_id: str,
        epoch: int,
        metrics: dict[str, float],
        ranked: dict[str, float] | None = None,
    ) -> str | None:
        """One finished epoch (0-based `epoch`) of a running trial; returns a reason to stop.
        `ranked`, at a rung under `rung_averaging`, is what the rule ranks instead of `metrics`
        (the averaged weights' validation); progress shows `metrics`."""
        self.pending.append({"trial_id": trial_id, "epoch": epoch, "metrics": metrics})
        return self._decide(trial_id, epoch + 1, (ranked or metrics).get(self.objective))

    def check(self, trial_id: str, epochs_done: float, metrics: dict[str, float]) -> str | None:
        """A mid-epoch validation at a rung inside an epoch (`pruning.mid_epoch_points`);
        returns a reason to stop. Live progress shows whole epochs only, so it is not queued."""
        return self._decide(trial_id, epochs_done, metrics.get(self.objective))

    def _decide(self, trial_id: str, epochs_done: float, value: float | None) -> str | None:
        if value is None or not math.isfinite(value):
            return None  # a non-finite loss fails the trial in the worker; nothing to rank
        reason = self.pruner.report(trial_id, epochs_done, self.sign * value)
        if reason:
            self.stopped[trial_id] = reason
        return reason

    def promotion(
        self, paused: dict[str, float], drawn_all: bool = False
    ) -> tuple[str, float] | None:
        """The paused trial (id -> the rung it paused at) to continue now, and its rung; None
        when no paused trial has earned it (see `PromotingASHA`)."""
        return self.pruner.promotion(paused, drawn_all)

    def drain(self) -> list[dict[str, Any]]:
        """The reports since the last call, oldest first."""
        out, self.pending = self.pending, []
        return out


def make_channel(spec: JobSpec) -> EpochChannel:
    """The job's per-epoch channel with its pruning rule."""
    objective = spec.tuner.objective
    pruner = make_pruner(spec.tuner.pruning, spec.tuner.epochs, objective.direction)
    return EpochChannel(pruner, objective.name, objective.direction)
