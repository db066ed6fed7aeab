"""`harness status`: the trials table of a job, read from the job directory alone."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.errors import headline
from harness.jobdir import JobDir, ranked_trials


def trial_rows(job_dir: JobDir) -> list[dict[str, Any]]:
    """One flat row per trial: id, best mark, status and its reason, the objective at the
    best epoch, that epoch, epochs run, duration, one key per hyperparameter, and the test
    metrics of its latest export (`test_<metric>`)."""
    spec = job_dir.read_spec()
    objective = spec["tuner"]["objective"]
    records = job_dir.trial_records()
    best_id = best_trial_id(records, objective["direction"])
    driver_alive = job_dir.driver_alive()
    exported = _exported_test_metrics(job_dir)
    rows = []
    for t in records:
        status, reason = _status(t, driver_alive)
        run = t["run"]
        epochs = (run.get("pruned") or {}).get("epochs_done")
        if epochs is None and t.get("metrics"):
            observations = t["metrics"]["metrics"].get(objective["name"], {}).get("observations")
            epochs = len(observations) if observations else None
        row = {
            "trial": t["trial_id"],
            "best": t["trial_id"] == best_id,
            "status": status,
            "reason": reason,
            objective["name"]: t.get("score"),
            # Keras Tuner leaves best_step at 0 for a trial without a score (a failed one).
            "best_epoch": (t.get("best_step") or 0) + 1 if t.get("score") is not None else None,
            "epochs": epochs,
            "duration_s": run.get("total_s", run.get("duration_s")),  # a promoted trial's all
        }
        values = t["hyperparameters"]["values"]
        row.update({k: v for k, v in sorted(values.items()) if not k.startswith("tuner/")})
        row.update({f"test_{k}": v for k, v in exported.get(t["trial_id"], {}).items()})
        rows.append(row)
    return rows


# Below this many columns the table shows status words without their reasons.
NARROW = 100


def trials_table(
    job_dir: JobDir, rows: list[dict[str, Any]] | None = None, width: int | None = None
) -> Table:
    """The rows as a terminal table of at most `width` columns (characters): hyperparameters
    that differ between trials get a column each, as many as fit; those every trial shares,
    and the names of those left out, go in the caption. A status's reason is cut to fit."""
    spec = job_dir.read_spec()
    objective = spec["tuner"]["objective"]["name"]
    rows = trial_rows(job_dir) if rows is None else rows
    fixed_keys = ("trial", "best", "status", "reason", objective, "best_epoch", "epochs")
    hps = [
        k for k in _keys(rows) if k not in (*fixed_keys, "duration_s") and not k.startswith("test_")
    ]
    varying = [k for k in hps if len({repr(r.get(k)) for r in rows}) > 1]
    shared = {k: rows[0].get(k) for k in hps if k not in varying} if rows else {}
    tests = [k for k in _keys(rows) if k.startswith("test_")]
    cells = {
        "trial": [r["trial"] + (" ★ best" if r["best"] else "") for r in rows],
        "status": [r["status"] + (f" ({r['reason']})" if r["reason"] else "") for r in rows],
        objective: [_cell(r[objective]) for r in rows],
        "best epoch": [_cell(r["best_epoch"]) for r in rows],
        "epochs": [_cell(r["epochs"]) for r in rows],
        **{k: [_cell(r.get(k)) for r in rows] for k in varying},
        "duration": [
            f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "-" for r in rows
        ],
    }
    # A header folds at its spaces ("best epoch"); a cell keeps its line.
    natural = {k: max([*map(len, k.split()), *map(len, v)]) for k, v in cells.items()}
    status_width = natural["status"]
    shown = varying
    narrow = width is not None and width < NARROW
    if narrow:  # status words (a running trial's epoch kept), no best-epoch column
        del cells["best epoch"]
        cells["status"] = [
            r["status"] + (f" ({r['reason']})" if r["status"] == "RUNNING" and r["reason"] else "")
            for r in rows
        ]
        natural["status"] = max([len("status"), *map(len, cells["status"])])
    if width is not None:
        # The status keeps room for its word and, if the terminal allows, its reason's start.
        status_width = min(
            natural["status"], len("RUNNING (epoch 10/12)") if narrow else width // 4
        )
        # Each column takes its text plus 3 (padding and a border); the table 1 more, and 2
        # spare for rich's rounding.
        used = 3 + status_width + 3
        used += sum(natural[k] + 3 for k in cells if k not in (*varying, "status"))
        shown = []
        for k in varying:
            if used + natural[k] + 3 <= width:
                shown.append(k)
                used += natural[k] + 3
    hidden = [k for k in varying if k not in shown]
    caption = [" ".join(f"{k}={_cell(v)}" for k, v in shared.items())]
    for r in rows:
        metrics = {k[len("test_") :]: r.get(k) for k in tests if r.get(k) is not None}
        if metrics:
            shown_metrics = " ".join(f"{k}={_cell(v)}" for k, v in metrics.items())
            caption.append(f"exported trial {r['trial']}, on the test split: {shown_metrics}")
    if hidden:
        caption.append(
            f"not shown ({len(hidden)}, too wide for this terminal): {', '.join(hidden)}; "
            "`--format csv` or `--format json` has every hyperparameter"
        )
    table = Table(
        title=f"{spec['name']}: {len(rows)} trials ({job_dir.root})",
        caption="\n".join(c for c in caption if c) or None,
    )
    columns = [c for c in ("trial", "status", objective, "best epoch", "epochs") if c in cells]
    columns += [*shown, "duration"]
    for column in columns:
        if column == "status":
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=status_width)
        else:
            # Ids, scores and durations on one line each; hyperparameter values may fold.
            keep = column in ("trial", objective, "duration")
            table.add_column(column, overflow="fold", no_wrap=keep)
    for i in range(len(rows)):
        table.add_row(*(cells[c][i] for c in columns))
    return table


def rows_as_csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_keys(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _keys(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in first-seen order (trials of other branches add keys)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _exported_test_metrics(job_dir: JobDir) -> dict[str, dict[str, float]]:
    """{trial_id: test metrics} from the export manifests (the latest version wins)."""
    import json

    found: dict[str, tuple[str, dict[str, float]]] = {}
    for path in job_dir.export_dir.glob("*/*/manifest.json"):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        # The newest by creation time: versions count per model folder (name, name_top2).
        trial_id, created = manifest.get("trial_id"), manifest.get("created", "")
        if trial_id is not None and created >= found.get(trial_id, ("", {}))[0]:
            found[trial_id] = (created, manifest.get("test_metrics", {}))
    return {trial_id: metrics for trial_id, (_, metrics) in found.items()}


def summary(job_dir: JobDir) -> dict[str, int]:
    counts: dict[str, int] = {}
    driver_alive = job_dir.driver_alive()
    for t in job_dir.trial_records():
        status = _status(t, driver_alive)[0]
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
        trial_id = best_trial_id(records, direction)
        if trial_id is not None:
            score = next(t["score"] for t in records if t["trial_id"] == trial_id)
            best[family] = (trial_id, score)
    return best


def best_trial_id(records: list[dict[str, Any]], direction: str) -> str | None:
    ranked = ranked_trials(records, direction)
    return ranked[0]["trial_id"] if ranked else None


def _status(t: dict[str, Any], driver_alive: bool) -> tuple[str, str | None]:
    """(status, why): PRUNED, INTERRUPTED (a dead driver's RUNNING), RUNNING with its epoch,
    FAILED with the first line of its error, or the oracle's status."""
    pruned = t["run"].get("pruned")
    if t["status"] == "COMPLETED" and pruned:
        reason = pruned["reason"]
        if not driver_alive:  # no search runs to promote it: say where it stays
            reason = reason.split("; it goes on once", 1)[0]
        return "PRUNED", f"after {pruned['epochs_done']} epochs: {reason}"
    if t["status"] == "RUNNING" and not driver_alive:
        return "INTERRUPTED", "runs again on resume"
    if t["status"] == "RUNNING" and t["progress"]:
        return "RUNNING", f"epoch {t['progress']['epoch']}/{t['progress']['epochs']}"
    if t["status"] == "FAILED" and t.get("message"):
        return "FAILED", headline(t["message"])
    return t["status"], None
