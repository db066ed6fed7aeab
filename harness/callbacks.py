"""Keras callbacks a trial runs with: live progress and atomic best-epoch checkpoints."""

from __future__ import annotations

import os
import time
from typing import Any

import keras

from harness.jobdir import JobDir, atomic_write_json


class EpochRecorder(keras.callbacks.Callback):
    """Keeps per-epoch metrics and writes `progress.json` so the driver can show live progress."""

    def __init__(self, job_dir: JobDir, trial_id: str, epochs: int):
        super().__init__()
        self.path = job_dir.trial_dir(trial_id) / "progress.json"
        self.epochs = epochs
        self.history: list[dict[str, Any]] = []
        self._epoch_started = 0.0
        self._durations: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self._durations.append(time.perf_counter() - self._epoch_started)
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics.pop("learning_rate", None)
        self.history.append({"epoch": epoch, "metrics": metrics})
        atomic_write_json(
            self.path, {"epoch": epoch + 1, "epochs": self.epochs, "metrics": metrics}
        )

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


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the best epoch's weights by the objective, atomically (temp file + os.replace)."""

    def __init__(self, path, objective):
        super().__init__()
        self.path = path
        self.objective = objective
        self.best: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.objective.name)
        if value is None:
            return
        better = self.best is None or (
            value > self.best if self.objective.direction == "max" else value < self.best
        )
        if better:
            self.best = float(value)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".tmp-{os.getpid()}.weights.h5")
            self.model.save_weights(str(tmp))
            os.replace(tmp, self.path)
