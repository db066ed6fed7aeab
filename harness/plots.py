"""A picture of a search, from the job directory alone: `search.png`.

Left: the best objective so far against wall-clock minutes since the first trial was submitted
(a step each time a finished trial improves on the best). Right: every trial's objective per
epoch; pruned trials dashed, failed ones absent (they have no scores), the best in bold.
Written at the end of `harness tune` and on demand by `harness plot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.jobdir import JobDir, atomic_path
from harness.status import best_trial_id


def plot_search(job_dir: JobDir, out: Path | None = None) -> Path:
    """Draws the job's search into `out` (default: `<job dir>/search.png`); returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    spec = job_dir.read_spec()
    objective = spec["tuner"]["objective"]
    records = job_dir.trial_records()
    out = Path(out) if out else job_dir.root / "search.png"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    times, best = best_so_far(records, objective["direction"])
    if times:
        left.step(times, best, where="post", color="tab:blue")
        left.plot(times, best, "o", color="tab:blue", markersize=3)
    left.set(
        xlabel="minutes since the first trial started",
        ylabel=f"best {objective['name']} so far",
        title=f"{spec['name']}: best so far",
    )
    best_id = best_trial_id(records, objective["direction"])
    for t in records:
        curve = _curve(t, objective["name"])
        if not curve:
            continue
        epochs, values = zip(*curve, strict=True)
        pruned = bool(t["run"].get("pruned"))
        is_best = t["trial_id"] == best_id
        right.plot(
            epochs,
            values,
            linestyle="--" if pruned else "-",
            linewidth=2.5 if is_best else 1,
            alpha=1.0 if is_best else 0.6,
            label=f"trial {t['trial_id']} (best)" if is_best else None,
        )
    right.set(
        xlabel="epoch",
        ylabel=objective["name"],
        title="per trial (dashed: pruned)",
    )
    if best_id is not None:
        right.legend(loc="best")
    with atomic_path(out) as tmp:  # never a half-written picture
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


def best_so_far(records: list[dict[str, Any]], direction: str) -> tuple[list[float], list[float]]:
    """(minutes, best objective) at each finished trial's end that improved the best."""
    finished = [
        (t["run"]["ended"], t["score"])
        for t in records
        if t.get("score") is not None and t["run"].get("ended") is not None
    ]
    starts = [t["run"]["submitted"] for t in records if t["run"].get("submitted") is not None]
    if not finished or not starts:
        return [], []
    origin = min(starts)
    times, values = [], []
    for ended, score in sorted(finished):
        if not values or (score > values[-1] if direction == "max" else score < values[-1]):
            times.append((ended - origin) / 60)
            values.append(score)
    return times, values


def _curve(t: dict[str, Any], name: str) -> list[tuple[int, float]]:
    observations = (t.get("metrics") or {}).get("metrics", {}).get(name, {}).get("observations")
    return [(o["step"] + 1, o["value"][0]) for o in observations or []]
