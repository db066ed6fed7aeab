"""Keras callbacks a trial runs with: live progress and atomic best-epoch checkpoints."""

from __future__ import annotations

import math
import time
from typing import Any

import keras

from harness.errors import TrialError
from harness.jobdir import JobDir, atomic_path, atomic_write_json


class EpochRecorder(keras.callbacks.Callback):
    """Keeps per-epoch metrics, writes `progress.json` (for `harness status`) and reports each
    epoch to the job's channel, which may answer that the pruning rule stops this trial.

    A loss or metric that is no longer a finite number fails the trial at once (the objective
    of a diverged model means nothing, and NaN must never be ranked or exported).

    `pause_to(epochs_done)`, under ASHA's promotions, is where a stopped trial's weights go, so
    that the driver can continue it from them later.
    """

    def __init__(self, job_dir: JobDir, trial_id: str, epochs: int, channel=None, pause_to=None):
        super().__init__()
        self.path = job_dir.trial_dir(trial_id) / "progress.json"
        self.trial_id = trial_id
        self.epochs = epochs
        self.channel = channel
        self.pause_to = pause_to
        self.history: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []  # mid-epoch validations (MidEpochCheck)
        self.pruned: dict[str, Any] | None = None
        # Under `rung_averaging`: what the rule ranks at a whole-epoch rung (`AveragedRungs`),
        # by epochs done, instead of the epoch's own validation.
        self.ranked: dict[int, dict[str, float]] = {}
        self._epoch_started = 0.0
        self._durations: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()
        if self.pruned:  # a space training in phases (transfer) calls fit again: stop it too
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self._durations.append(time.perf_counter() - self._epoch_started)
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics.pop("learning_rate", None)
        bad = next((k for k, v in metrics.items() if not math.isfinite(v)), None)
        if bad is not None:
            raise TrialError(f"{bad} became {metrics[bad]} in epoch {epoch + 1}: training diverged")
        self.history.append({"epoch": epoch, "metrics": metrics})
        atomic_write_json(
            self.path, {"epoch": epoch + 1, "epochs": self.epochs, "metrics": metrics}
        )
        if self.pruned:  # stopped mid-epoch: this was the rest of that epoch's bookkeeping
            return
        ranked = self.ranked.pop(epoch + 1, None)
        if ranked is not None:
            self.checks.append({"epochs_done": epoch + 1, "metrics": ranked, "averaged": True})
        reason = None
        if self.channel:
            reason = self.channel.report(self.trial_id, epoch, metrics, ranked)
        self._stop_if(reason, epoch + 1)

    def check(self, epochs_done: float, metrics: dict[str, float], averaged=False) -> None:
        """A validation inside an epoch, at a pruning rung; may stop the trial there (Keras then
        ends the epoch early, validates as usual, and `on_epoch_end` records the partial epoch)."""
        self.checks.append(
            {
                "epochs_done": epochs_done,
                "metrics": metrics,
                **({"averaged": True} if averaged else {}),
            }
        )
        reason = self.channel.check(self.trial_id, epochs_done, metrics) if self.channel else None
        self._stop_if(reason, epochs_done)

    def _stop_if(self, reason: str | None, epochs_done: float) -> None:
        """The pruning rule's answer: a reason stops the trial where it is."""
        if reason:
            self.pruned = {"epochs_done": epochs_done, "reason": reason}
            self.model.stop_training = True
            if self.pause_to is not None:
                with atomic_path(self.pause_to(epochs_done)) as tmp:
                    self.model.save_weights(str(tmp))

    def timings(self) -> dict[str, float]:
        """First epoch minus a steady one: graph tracing plus filling the data cache."""
        if not self._durations:
            return {}
        steady = min(self._durations[1:]) if len(self._durations) > 1 else self._durations[0]
        return {
            "first_epoch_s": self._durations[0],
            "steady_epoch_s": steady,
            "first_epoch_overhead_s": max(0.0, self._durations[0] - steady),
        }


class MidEpochCheck(keras.callbacks.Callback):
    """Validates at the pruning rule's rungs inside an epoch (ASHA with `grace_epochs: 0.25`
    validates a quarter of the way through epoch 1) and hands the result to the recorder, so a
    hopeless trial stops after a fraction of an epoch.

    Args:
        recorder: The trial's `EpochRecorder` (reports to the channel, records the check).
        points: Fractional epochs, e.g. [0.25, 0.75, 2.25] (whole numbers are left to epochs).
        steps_per_epoch: Training steps in one epoch.
        start: (epoch, step) a continued trial takes up from (ASHA's promotion).
        validation: The validation dataset, as `fit` gets it.
    """

    def __init__(
        self,
        recorder: EpochRecorder,
        points,
        steps_per_epoch: int,
        validation,
        start: tuple[int, int] = (0, 0),
    ):
        from harness.pruning import rung_steps

        super().__init__()
        self.recorder = recorder
        self.validation = validation
        self.points: dict[int, list[tuple[int, float]]] = {}  # epoch -> [(step, point)]
        for point, (epoch, step) in rung_steps(points, steps_per_epoch).items():
            if step:  # inside the epoch (a whole epoch's point is its end's)
                self.points.setdefault(epoch, []).append((step, point))
        # A trial continued from a rung inside an epoch runs that epoch's rest as a shorter
        # epoch: its batches count from the step it took up from.
        self.start = start
        self._offset = 0
        self._due: list[tuple[int, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._due = list(self.points.get(epoch, []))
        self._offset = self.start[1] if epoch == self.start[0] else 0

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step run (several with steps_per_execution).
        done = self._offset + batch + 1
        while self._due and done >= self._due[0][0] and not self.recorder.pruned:
            _, point = self._due.pop(0)
            self.recorder.check(point, _validate(self.model, self.validation))


def _validate(model, validation) -> dict[str, float]:
    """The model's validation metrics in the middle of `fit`. `evaluate` resets the model's
    metrics, which hold the epoch's running training loss and accuracy: they are saved before and
    restored after, so the epoch's logs stay whole."""
    variables = model.metrics_variables
    saved = [v.numpy() for v in variables]
    results = model.evaluate(validation, verbose=0, return_dict=True)
    for variable, value in zip(variables, saved, strict=True):
        variable.assign(value)
    return {f"val_{k}": float(v) for k, v in results.items()}


class AveragedRungs(keras.callbacks.Callback):
    """Ranks a trial at each ASHA rung by its weights averaged over the way there
    (`tuner.pruning.rung_averaging`) instead of the weights of its last step.

    Mid-schedule, at a high learning rate, the last step's weights are one point of a noisy
    walk: on Fashion-MNIST one trial with one seed scored 0.80-0.84 after its first epoch over
    six runs (a one-cycle schedule near its peak rate) while its runs agree within 0.2 points at
    the schedule's end, so the rung's ranking among good trials was a lottery
    (docs/BENCHMARKS.md, seed 6000). The average of the iterates along the last stretch
    (Polyak averaging; "latest weight averaging", Kaddour 2022) stands for where they would
    settle as the rate falls, with much less of the walk's noise.

    Before each rung the weights are sampled `samples` times, evenly over the last `fraction`
    of the steps since the rung below (or since the trial's start), the rung's own step last.
    At the rung the average is validated and the trained weights are put back untouched:
    training, checkpoints, paused weights and the trial's reported metrics are the trained
    weights'. Every floating-point weight is averaged, batch-norm statistics included.

    A rung inside an epoch goes to the recorder's `check` (this callback then stands in for
    `MidEpochCheck`); at a whole-epoch rung the recorder ranks the averaged score with that
    epoch (`EpochRecorder.ranked`), and the epoch's own validation stays the trial's metrics.

    Args:
        recorder: The trial's `EpochRecorder`.
        rungs: The rungs ahead of the trial, in epochs (fractions and whole numbers).
        fraction: How much of the way from the rung below is averaged, in (0, 1].
        steps_per_epoch: Training steps in one epoch.
        validation: The validation dataset, as `fit` gets it.
        start: (epoch, step) a continued trial takes up from (ASHA's promotion).
        samples: Weight samples per rung (fewer when the stretch has fewer steps).
    """

    def __init__(
        self,
        recorder: EpochRecorder,
        rungs,
        fraction: float,
        steps_per_epoch: int,
        validation,
        start: tuple[int, int] = (0, 0),
        samples: int = 16,
    ):
        from harness.pruning import rung_step

        super().__init__()
        self.recorder = recorder
        self.validation = validation
        self.steps_per_epoch = steps_per_epoch
        self.start = start
        first = start[0] * steps_per_epoch + start[1]
        # [(the rung's step counted from the trial's start, the rung, the steps sampled)]
        self.targets: list[tuple[int, float, list[int]]] = []
        below = first
        for rung in sorted(rungs):
            epoch, step = rung_step(rung, steps_per_epoch)
            at = epoch * steps_per_epoch + step
            if at <= below:
                continue
            window = max(1, round(fraction * (at - below)))
            n = min(samples, window)
            sampled = {at - (window - 1) * i // max(1, n - 1) for i in range(n)}
            self.targets.append((at, rung, sorted(sampled)))
            below = at
        self._epoch = 0
        self._offset = 0
        self._average: list | None = None
        self._count = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._offset = self.start[1] if epoch == self.start[0] else 0

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step run (several with steps_per_execution).
        done = self._epoch * self.steps_per_epoch + self._offset + batch + 1
        while self.targets and not self.recorder.pruned:
            at, rung, sampled = self.targets[0]
            due = sum(1 for s in sampled if s <= done)
            if due:
                self._add(self.model.get_weights(), due)
                del sampled[:due]
            if done < at:
                return
            self.targets.pop(0)
            metrics = self._validate_average()
            if at % self.steps_per_epoch:
                self.recorder.check(rung, metrics, averaged=True)
            else:
                self.recorder.ranked[at // self.steps_per_epoch] = metrics

    def _add(self, weights: list, times: int) -> None:
        """Running mean of the floating-point weights (`times` samples of these at once)."""
        if self._average is None:
            self._average = [w.copy() if _floating(w) else None for w in weights]
            self._count = times
            return
        self._count += times
        for mean, w in zip(self._average, weights, strict=True):
            if mean is not None:
                mean += (w - mean) * (times / self._count)

    def _validate_average(self) -> dict[str, float]:
        trained = self.model.get_weights()
        average = [t if a is None else a for a, t in zip(self._average, trained, strict=True)]
        self._average, self._count = None, 0
        self.model.set_weights(average)
        try:
            return _validate(self.model, self.validation)
        finally:
            self.model.set_weights(trained)


def _floating(array) -> bool:
    import numpy as np

    return np.issubdtype(array.dtype, np.floating)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the best epoch's weights by the objective, atomically (`atomic_path`)."""

    def __init__(self, path, objective, best: float | None = None):
        super().__init__()
        self.path = path
        self.objective = objective
        self.best = best  # a continued trial's best so far: saved weights it must beat

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.objective.name)
        if value is None:
            return
        better = self.best is None or (
            value > self.best if self.objective.direction == "max" else value < self.best
        )
        if better:
            self.best = float(value)
            with atomic_path(self.path) as tmp:
                self.model.save_weights(str(tmp))
