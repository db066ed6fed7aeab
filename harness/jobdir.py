"""The job directory: the single source of truth for a job, written atomically.

job.json                    the resolved job spec (resume checks it matches)
driver.lock / driver.pid    held by the one driver working on the job
oracle/oracle.json          Keras Tuner oracle state (search history, retry queue)
oracle/trial_<id>/trial.json  hyperparameters, per-epoch metrics, score, status, error
trials/<id>/run.json        how the trial ran: attempts, node, timings, duration
trials/<id>/progress.json   last finished epoch, written by the worker while it trains
trials/<id>/checkpoint.weights.h5  best-epoch weights (export, Hyperband warm starts)
tensorboard/<id>/           TensorBoard runs, one per trial
export/<model>/<version>/   SavedModel + model.keras + manifest.json
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from harness.errors import UserError
from harness_core.files import (  # re-exported: the engine imports them from here
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json,
)

__all__ = [
    "JobDir",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "ranked_trials",
    "read_json",
]

ORACLE_PROJECT = "oracle"
# The layout of a job directory; a harness refuses a directory written in another layout.
FORMAT_VERSION = 1


def ranked_trials(records: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Trial records with a score (COMPLETED, pruned ones included: their best so far counts),
    best first by the objective's `direction` ("max" or "min"); ties keep trial order. The
    one ranking of records that status, plots and export share."""
    done = [t for t in records if t["status"] == "COMPLETED" and t.get("score") is not None]
    sign = -1 if direction == "max" else 1
    return sorted(done, key=lambda t: sign * t["score"])


class JobDir:
    """Paths and state files of one job."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    @property
    def spec_path(self) -> Path:
        return self.root / "job.json"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @property
    def oracle_dir(self) -> Path:
        return self.root / ORACLE_PROJECT

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tensorboard"

    def trial_board(self, trial_id: str) -> Path:
        """A trial's TensorBoard run, named for people: `trial_007`."""
        return self.tensorboard_dir / f"trial_{trial_id}"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def trial_dir(self, trial_id: str) -> Path:
        return self.root / "trials" / trial_id

    def checkpoint_path(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / "checkpoint.weights.h5"

    def paused_path(self, trial_id: str, epochs_done: float) -> Path:
        """The weights a trial paused with at an ASHA rung, which its continuation loads."""
        return self.trial_dir(trial_id) / f"paused-{epochs_done:g}.weights.h5"

    def exists(self) -> bool:
        return self.spec_path.is_file()

    @property
    def format_path(self) -> Path:
        return self.root / "format.json"

    def check_format(self) -> None:
        """Refuses a job directory of another layout version (a directory from before
        versions were written counts as version 1)."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root} is a file, not a job directory")
        version = (read_json(self.format_path) or {}).get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise UserError(
                f"{self.root} is a job directory of format version {version}; this harness "
                f"reads version {FORMAT_VERSION} (use the harness that wrote it, or start over)"
            )

    def check_existing(self) -> None:
        """For the commands that read a job: refuses nothing at all, then as `check_format`."""
        if not self.root.exists():
            raise UserError(f"{self.root}: no such job directory")
        self.check_format()

    def write_format(self) -> None:
        atomic_write_json(self.format_path, {"version": FORMAT_VERSION})

    def remove_leftovers(self) -> list[Path]:
        """Deletes temporary files and folders of writers that were killed mid-write
        (checkpoints, exports, JSON records); returns what it removed."""
        removed = []
        for pattern in ("trials/*/.tmp-*", "export/*/.tmp-*", "**/.*.tmp"):
            for path in self.root.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def read_spec(self) -> dict[str, Any]:
        self.check_existing()
        spec = read_json(self.spec_path)
        if spec is None:
            raise UserError(f"{self.root} is not a job directory (no job.json)")
        return spec

    def trial_records(self) -> list[dict[str, Any]]:
        """Oracle trial records (trial.json) merged with run records, ordered by id."""
        records = []
        for path in sorted(self.oracle_dir.glob("trial_*/trial.json")):
            trial = read_json(path)
            trial_id = trial["trial_id"]
            trial["run"] = read_json(self.trial_dir(trial_id) / "run.json", {})
            trial["progress"] = read_json(self.trial_dir(trial_id) / "progress.json", {})
            records.append(trial)
        return records

    def driver_alive(self) -> bool:
        """Whether a driver holds this job's lock now. Probes the lock itself (the OS drops a
        dead holder's lock), never `driver.pid`, which a killed driver leaves behind."""
        path = self.root / "driver.lock"
        if not path.exists():
            return False
        probe = filelock.FileLock(str(path))
        try:
            probe.acquire(timeout=0)
        except filelock.Timeout:
            return True
        except OSError:  # a job directory this user cannot write: probe without writing
            return _locked_elsewhere(path)
        probe.release()
        return False

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Held by the driver for the whole job; a second driver gets a clear refusal."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / "driver.lock"))
        pid_path = self.root / "driver.pid"
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            pid = pid_path.read_text().strip() if pid_path.exists() else "?"
            raise UserError(
                f"job directory {self.root} is in use by another harness driver (pid {pid}); "
                "wait for it to finish or stop it first"
            ) from None
        except OSError as e:  # a directory this user cannot write
            raise UserError(
                f"job directory {self.root} is not writable ({e.strerror or e}); "
                "a run, resume or export writes into it"
            ) from None
        try:
            atomic_write_text(pid_path, str(os.getpid()))
            yield
        finally:
            pid_path.unlink(missing_ok=True)
            lock.release()


def _locked_elsewhere(path: Path) -> bool:
    """Whether another process holds the lock file `path`, probed through a read-only open
    (`flock` needs no write access; filelock's own probe opens it for writing). False when it
    cannot even be read: nothing to go on, and a driver would have been able to write it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # drops the probe's own lock with it
    return False
