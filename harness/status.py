"""`harness status`: the trials table of a job, read from the job directory alone."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.jobdir import JobDir


def trials_table(job_dir: JobDir) -> Table:
    spec = job_dir.read_spec()
    objective = spec["tuner"]["objective"]
    records = job_dir.trial_records()
    best_id = _best_id(records, objective["direction"])
    driver_alive = job_dir.driver_alive()
    table = Table(title=f"{spec['name']}: {len(records)} trials ({job_dir.root})")
    for column in ("trial", "status", "hyperparameters", objective["name"], "duration"):
        table.add_column(column, overflow="fold")
    for t in records:
        marker = " ★ best" if t["trial_id"] == best_id else ""
        table.add_row(
            t["trial_id"] + marker,
            _status(t, driver_alive),
            _hyperparameters(t),
            f"{t['score']:.4f}" if t.get("score") is not None else "-",
            _duration(t),
        )
    return table


def summary(job_dir: JobDir) -> dict[str, int]:
    counts: dict[str, int] = {}
    driver_alive = job_dir.driver_alive()
    for t in job_dir.trial_records():
        status = _status(t, driver_alive).split(" ")[0].rstrip(":")
        counts[status] = counts.get(status, 0) + 1
    return counts


def best_per_family(job_dir: JobDir) -> dict[str, tuple[str, float]]:
    """The best trial of each model family, for spaces with a `family` hyperparameter (e.g.
    text_rnn's rnn / pooled / conv1d): the tutorials' family is reported apart from the rest."""
    direction = job_dir.read_spec()["tuner"]["objective"]["direction"]
    families: dict[str, list[dict[str, Any]]] = {}
    for t in job_dir.trial_records():
        family = t["hyperparameters"]["values"].get("family")
        if family is not None:
            families.setdefault(family, []).append(t)
    best = {}
    for family, records in sorted(families.items()):
        trial_id = _best_id(records, direction)
        if trial_id is not None:
            score = next(t["score"] for t in records if t["trial_id"] == trial_id)
            best[family] = (trial_id, score)
    return best


def _best_id(records: list[dict[str, Any]], direction: str) -> str | None:
    done = [t for t in records if t["status"] == "COMPLETED" and t.get("score") is not None]
    if not done:
        return None
    pick = max if direction == "max" else min
    return pick(done, key=lambda t: t["score"])["trial_id"]


def _status(t: dict[str, Any], driver_alive: bool) -> str:
    pruned = t["run"].get("pruned")
    if t["status"] == "COMPLETED" and pruned:
        return f"PRUNED after {pruned['epochs_done']} epochs: {pruned['reason']}"
    if t["status"] == "RUNNING" and not driver_alive:
        return "INTERRUPTED (runs again on resume)"
    if t["status"] == "RUNNING" and t["progress"]:
        return f"RUNNING (epoch {t['progress']['epoch']}/{t['progress']['epochs']})"
    if t["status"] == "FAILED" and t.get("message"):
        return f"FAILED: {t['message'].strip().splitlines()[0][:80]}"
    return t["status"]


def _hyperparameters(t: dict[str, Any]) -> str:
    values = t["hyperparameters"]["values"]
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(values.items())
        if not k.startswith("tuner/")
    )


def _duration(t: dict[str, Any]) -> str:
    seconds = t["run"].get("duration_s")
    return f"{seconds:.1f}s" if seconds is not None else "-"
