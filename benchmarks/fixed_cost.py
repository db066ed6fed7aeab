"""Fixed cost per trial and memory of warm workers and driver, over many short trials.

Usage:
    python benchmarks/fixed_cost.py [--trials 100] [--examples 3000] [--json out.json]

Runs one `harness tune` job of `--trials` short trials (a small CNN on synthetic 28x28 images,
one epoch, about a second of `fit`) with the job's default resources (warm workers, one per
concurrent trial), then reads each `trials/<id>/run.json`:
- fixed cost = `duration_s` (driver: submitted -> result recorded) - `timings.fit_s`: everything
  a trial costs besides training (queueing, request, data, build, checkpoint, records);
- a warm worker's RSS growth per trial (least squares over each process's trials after its
  first five);
- the driver's RSS over the job, and the first vs last 100 trials' fixed cost (flat loop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import children  # benchmarks/children.py: a stop reaches the job too
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SMALL_CNN = {
    "family": "plain",
    "lr_schedule": "constant",
    "label_smoothing": 0.0,
    "conv_layers": 2,
    "kernel_size": 3,
    "batch_norm": False,
    "filters_0": 16,
    "filters_1": 16,
    "head": "flatten",
    "dense_units": 32,
    "dropout": 0.0,
    "optimizer": "adam",
}


def make_arrays(path: Path, examples: int) -> None:
    """Learnable synthetic images: class c is a bright band at rows 2c..2c+3."""
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 2 : 2 * c + 5, 4:24] = 230
        return images, labels

    x_train, y_train = split(examples)
    x_test, y_test = split(500)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def make_job(out: Path, arrays: Path, trials: int) -> dict:
    return {
        "name": "fixed-cost",
        "output_dir": str(out),
        "data": {"pipeline": "image_classification", "arrays": str(arrays), "batch_size": 64},
        "search_space": {"name": "image_cnn", "fixed": SMALL_CNN},
        "tuner": {"algorithm": "random", "max_trials": trials, "epochs": 1},
        "export": {"policy": "none"},
    }


def slope(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(values)), values, 1)[0])


def summarize(job_dir: Path) -> dict:
    runs = []
    for path in sorted((job_dir / "trials").glob("*/run.json"), key=lambda p: int(p.parent.name)):
        runs.append(json.loads(path.read_text()))
    done = [r for r in runs if r.get("status") == "COMPLETED"]
    fixed = [r["duration_s"] - r["timings"]["fit_s"] for r in done]
    by_pid = defaultdict(list)
    for r in done:
        by_pid[r["pid"]].append(r["worker_rss_mb"])
    worker_slopes = {pid: slope(rss[5:]) for pid, rss in by_pid.items() if len(rss) > 7}
    first, last = fixed[:100], fixed[-100:]
    return {
        "trials": len(runs),
        "completed": len(done),
        "fit_s_median": statistics.median(r["timings"]["fit_s"] for r in done),
        "fixed_cost_s_median": statistics.median(fixed),
        "fixed_cost_s_p90": float(np.percentile(fixed, 90)),
        "fixed_cost_first100_median": statistics.median(first),
        "fixed_cost_last100_median": statistics.median(last),
        "fixed_cost_last_vs_first100": statistics.median(last) / statistics.median(first),
        # The whole per-trial cost (driver: submitted -> recorded), fit included.
        "duration_s_first100_median": statistics.median(r["duration_s"] for r in done[:100]),
        "duration_s_last100_median": statistics.median(r["duration_s"] for r in done[-100:]),
        "worker_processes": len(by_pid),
        "worker_rss_mb_per_trial": worker_slopes,
        "driver_rss_mb_first_last": [done[0]["driver_rss_mb"], done[-1]["driver_rss_mb"]],
        "driver_rss_mb_per_trial": slope([r["driver_rss_mb"] for r in done][5:]),
        "fixed_cost_parts_median": {
            k: statistics.median(r["timings"].get(k, 0.0) for r in done)
            for k in ("queued_s", "import_s", "build_s", "first_epoch_overhead_s")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_arrays(tmp / "images.npz", args.examples)
        job = tmp / "job.yaml"
        job.write_text(yaml.safe_dump(make_job(tmp / "job", tmp / "images.npz", args.trials)))
        started = time.time()
        harness = [sys.executable, "-m", "harness", "tune", str(job)]
        children.run(harness, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        result = {"wall_s": time.time() - started, **summarize(tmp / "job")}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
