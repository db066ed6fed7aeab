"""Where trials run: the executor interface, and `FakeExecutor`, its in-process reference.

The tuning loop (harness/tuning.py) talks to an executor through a few calls:

    with executor:                       start workers (a local Ray, a cluster, or nothing)
        handle = executor.submit(request)   start one trial; `request` is a plain dict
        executor.wait(handles, timeout)     the handles whose trial ended
        executor.result(handle)             (result, None) or (None, error text)
        executor.drain()                    per-epoch reports since the last call
        executor.kill(handle)               stop one trial now (time limit); no result follows
        executor.cancel(handles)            stop them all (interrupt)
        executor.seed(curves)               earlier trials' curves, for the pruning rule
        executor.promotion(paused, drawn_all)  a paused trial to continue now (ASHA's promotions)
        executor.wait_started()             before the driver imports TFDS (`RayExecutor`)

`RayExecutor` (harness/ray_execution.py) runs `run_trial` in warm Ray actors. `FakeExecutor`
replays scripted epochs in the driver's process, so the loop (pruning, failures, budgets,
resume, interruption) is tested in milliseconds without Ray or TensorFlow.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from harness.channel import EpochChannel

# A script maps a trial request to its per-epoch metrics; raising fails the trial.
Script = Callable[[dict[str, Any]], Iterable[dict[str, float]]]


class ExecutorLost(Exception):
    """Where the trials run is gone (a Ray cluster's head died): the job stops as when
    interrupted, its state saved, and `harness resume` continues once it is back."""


class FakeExecutor:
    """Runs scripted trials in process, one epoch of every running trial per `wait`.

    Args:
        script: request -> the metrics of each epoch (a generator may raise mid-trial).
        channel: The job's epoch channel (pruning decisions), as a real worker would use.
        capacity: How many trials may run at once (like the number of Ray actors).
    """

    def __init__(self, script: Script, channel: EpochChannel, capacity: int = 1):
        self.script = script
        self.channel = channel
        self.capacity = capacity
        self.running: dict[int, _FakeTrial] = {}
        self.finished: dict[int, tuple[dict | None, str | None]] = {}
        self.submitted: list[dict[str, Any]] = []
        self.killed: list[str] = []
        self._ids = itertools.count()

    def __enter__(self) -> FakeExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drops the trials still running (`tune` closes its executor on return)."""
        self.running.clear()

    def wait_started(self) -> None:
        """Nothing starts in the background here."""

    def submit(self, request: dict[str, Any]) -> int:
        if len(self.running) >= self.capacity:
            raise RuntimeError("FakeExecutor: more trials submitted than slots")
        handle = next(self._ids)
        self.submitted.append(request)
        self.running[handle] = _FakeTrial(request, iter(self.script(request)))
        return handle

    def wait(self, handles: list[int], timeout: float) -> list[int]:
        for handle in list(self.running):
            trial = self.running[handle]
            outcome = trial.step(self.channel)
            if outcome is not None:
                self.finished[handle] = outcome
                del self.running[handle]
        return [h for h in handles if h in self.finished]

    def result(self, handle: int) -> tuple[dict[str, Any] | None, str | None]:
        return self.finished.pop(handle)

    def drain(self) -> list[dict[str, Any]]:
        return self.channel.drain()

    def seed(self, curves: dict[str, list[tuple[int, float]]]) -> None:
        self.channel.seed(curves)

    def promotion(
        self, paused: dict[str, float], drawn_all: bool = False
    ) -> tuple[str, float] | None:
        return self.channel.promotion(paused, drawn_all)

    def kill(self, handle: int) -> None:
        trial = self.running.pop(handle, None)
        if trial is not None:
            self.killed.append(trial.request["trial_id"])

    def cancel(self, handles: list[int]) -> None:
        for handle in handles:
            self.kill(handle)


class _FakeTrial:
    """One scripted trial: its epochs so far and what the channel answered."""

    def __init__(self, request: dict[str, Any], epochs: Iterator[dict[str, float]]):
        self.request = request
        self.epochs = epochs
        self.history: list[dict[str, Any]] = []
        # A continued trial (ASHA's promotion) starts at the epoch its rung falls in.
        self.first_epoch = int((request.get("continue_from") or {}).get("epochs_done", 0))
        self.started = time.time()

    def step(self, channel: EpochChannel) -> tuple[dict | None, str | None] | None:
        """Runs one epoch; returns (result, error) once the trial ended, else None."""
        trial_id = self.request["trial_id"]
        try:
            metrics = next(self.epochs)
        except StopIteration:
            return self._result(None), None
        except Exception as e:  # a scripted failure, as a worker's exception would be
            return None, f"{type(e).__name__}: {e}"
        epoch = self.first_epoch + len(self.history)
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            return None, f"TrialError: {bad[0]} became {metrics[bad[0]]} in epoch {epoch + 1}"
        self.history.append({"epoch": epoch, "metrics": dict(metrics)})
        reason = channel.report(trial_id, epoch, metrics)
        if reason:
            return self._result({"epochs_done": epoch + 1, "reason": reason}), None
        return None

    def _result(self, pruned: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "trial_id": self.request["trial_id"],
            "epochs": self.history,
            "hyperparameters": self.request["hyperparameters"],
            "pruned": pruned,
            "timings": {"queued_s": 0.0, "fit_s": 0.0},
            "node": "fake",
            "node_id": None,
            "pid": 0,
            "replicas": 1,
            "global_batch_size": 0,
            "worker_rss_mb": 0.0,
            "tensorflow_peak_mb": None,
            "started": self.started,
            "ended": time.time(),
        }
