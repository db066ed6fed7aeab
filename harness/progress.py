"""Live progress of a tuning job: trials done/running/failed, best so far, elapsed, ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# How often, at most, a log file (not a terminal) gets a progress line while anything changes;
# and how long it waits before repeating an unchanged line (a long epoch: the job is alive).
LOG_EVERY_S = 30.0
HEARTBEAT_S = 120.0


class JobProgress:
    """A rich progress bar over trials plus one printed line per finished trial.

    Not on a terminal (a log file, a cluster scheduler, CI), there is no live bar: the same
    status is printed as a plain unwrapped line when it changes, at most every `LOG_EVERY_S`
    seconds, whenever the number of finished trials changes, and unchanged every `HEARTBEAT_S`
    seconds (a long epoch).
    """

    def __init__(self, console: Console, total_trials: int, objective: str):
        self.console = console
        self.objective = objective
        self.live = console.is_terminal
        self.total = total_trials
        self._logged: tuple[float, int, str] = (0.0, -1, "")
        self._progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("tuning", total=total_trials, status="starting")
        self.started = time.time()

    def __enter__(self) -> JobProgress:
        if self.live:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self._progress.stop()

    def update(self, done: int, running: dict[str, dict[str, Any]], failed: int, best) -> None:
        """`running`: trial id -> its latest progress.json ({epoch, epochs, metrics})."""
        parts = [f"running {len(running)}", f"failed {failed}"]
        if best is not None:
            parts.append(f"best {self.objective}={best[1]:.4f} (trial {best[0]})")
        for trial_id, prog in sorted(running.items())[:3]:
            if prog:
                value = prog.get("metrics", {}).get(self.objective)
                shown = f" {self.objective}={value:.4f}" if value is not None else ""
                parts.append(f"[{trial_id} ep {prog['epoch']}/{prog['epochs']}{shown}]")
        status = " | ".join(parts)
        if self.live:
            self._progress.update(self._task, completed=done, status=status)
            return
        last_time, last_done, last_status = self._logged
        now = time.time()
        due = now - last_time >= (LOG_EVERY_S if status != last_status else HEARTBEAT_S)
        if done != last_done or due:
            elapsed = time.strftime("%H:%M:%S", time.gmtime(now - self.started))
            self.console.print(
                f"[{elapsed}] trials {done}/{self.total} | {status}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            self._logged = (now, done, status)

    def trial_line(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)
