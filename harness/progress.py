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


class JobProgress:
    """A rich progress bar over trials plus one printed line per finished trial."""

    def __init__(self, console: Console, total_trials: int, objective: str):
        self.console = console
        self.objective = objective
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
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
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
        self._progress.update(self._task, completed=done, status=" | ".join(parts))

    def trial_line(self, text: str) -> None:
        self.console.print(text, highlight=False)
