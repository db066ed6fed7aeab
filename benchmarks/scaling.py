"""Scaling and overhead of the harness on Ray: equal trials on 1 vs 2 workers, and memory.

Usage (real Fashion-MNIST imported into the data dir):
    python benchmarks/scaling.py --data-dir ~/tensorflow_datasets [--trials 8] [--json out.json]

Each trial is the tutorial CNN (every hyperparameter pinned but the learning rate, so trials
cost the same), single-threaded (`cpus_per_trial: 1`), on warm workers (`trials_per_worker`).
Reports wall time with 1 and 2 concurrent workers, the speed-up against its ceiling (2 x mean
fit alone / mean fit side by side), the harness's overhead
(1 - sum of trial fit times / (trial-phase wall time x workers)), the per-trial fixed costs
(queueing, TensorFlow import, build, first-epoch tracing), and RSS of driver and workers over
many small trials.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import children  # benchmarks/children.py: a stop reaches the job too
import yaml

REPO = Path(__file__).resolve().parents[1]
PINNED = {
    "family": "plain",
    "lr_schedule": "constant",
    "label_smoothing": 0.0,
    "conv_layers": 3,
    "kernel_size": 3,
    "batch_norm": False,
    "filters_0": 32,
    "filters_1": 64,
    "filters_2": 64,
    "head": "flatten",
    "dense_units": 64,
    "dropout": 0.5,
    "optimizer": "adam",
}


def make_job(out: Path, workers: int, trials: int, examples: int, epochs: int, reuse: int):
    return {
        "name": f"scaling-{workers}w",
        "output_dir": str(out),
        "data": {
            "pipeline": "image_classification",
            "dataset": "fashion_mnist",
            "download": False,
            "train_examples": examples,
            "test_examples": 1000,
            "batch_size": 64,
        },
        "search_space": {"name": "image_cnn", "fixed": PINNED},
        "tuner": {"algorithm": "random", "max_trials": trials, "epochs": epochs},
        "resources": {
            "cpus_per_trial": 1,
            "max_concurrent_trials": workers,
            "trials_per_worker": reuse,
        },
        "export": {"policy": "none"},
    }


def run_job(job: dict, tmp: Path, data_dir: str) -> tuple[float, list[dict]]:
    path = tmp / f"{job['name']}.yaml"
    path.write_text(yaml.safe_dump(job))
    start = time.perf_counter()
    children.run(
        [sys.executable, "-m", "harness", "tune", str(path)],
        cwd=REPO,
        check=True,
        env={**os.environ, "HARNESS_DATA_DIR": data_dir},
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    runs = [
        json.loads(p.read_text()) for p in sorted(Path(job["output_dir"]).glob("trials/*/run.json"))
    ]
    return wall, runs


def summarize(wall: float, runs: list[dict], workers: int) -> dict:
    fits = [r["timings"]["fit_s"] for r in runs]
    phase = max(r["ended"] for r in runs) - min(r["submitted"] for r in runs)
    mean = lambda key: statistics.mean(r["timings"].get(key, 0.0) for r in runs)  # noqa: E731
    return {
        "workers": workers,
        "command_wall_s": wall,
        "trial_phase_wall_s": phase,
        "sum_fit_s": sum(fits),
        "mean_fit_s": statistics.mean(fits),
        "overhead_trial_phase": 1 - sum(fits) / (phase * workers),
        "overhead_command": 1 - sum(fits) / (wall * workers),
        "fixed_costs_mean_s": {
            k: mean(k) for k in ("queued_s", "import_s", "build_s", "first_epoch_overhead_s")
        },
        "first_trial_import_s": max(r["timings"]["import_s"] for r in runs),
    }


def memory(tmp: Path, data_dir: str, trials: int, reuse: int) -> dict:
    job = make_job(tmp / "memory", 2, trials, 512, 1, reuse)
    job["name"] = "memory"
    _, runs = run_job(job, tmp, data_dir)
    driver = [r["driver_rss_mb"] for r in runs]
    by_worker: dict[int, list[float]] = {}
    for r in sorted(runs, key=lambda r: r["ended"]):
        by_worker.setdefault(r["pid"], []).append(r["worker_rss_mb"])
    return {
        "trials": trials,
        "trials_per_worker": reuse,
        "driver_rss_mb_first_last": [driver[0], driver[-1]],
        "driver_rss_mb_max": max(driver),
        "driver_slope_mb_per_trial": _slope(driver[len(driver) // 3 :]),
        "worker_processes": len(by_worker),
        "worker_rss_mb_first_last_per_process": [[v[0], v[-1]] for v in by_worker.values()],
        "worker_slope_mb_per_trial_mean": statistics.mean(
            _slope(v) for v in by_worker.values() if len(v) > 2
        )
        if any(len(v) > 2 for v in by_worker.values())
        else 0.0,
    }


def _slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    xs = range(n)
    mx, my = statistics.mean(xs), statistics.mean(values)
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--train-examples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--memory-trials", type=int, default=30)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    results: dict = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for workers in (1, 2):
            job = make_job(
                tmp / f"{workers}w",
                workers,
                args.trials,
                args.train_examples,
                args.epochs,
                reuse=args.trials,
            )
            results[f"{workers}_workers"] = summarize(*run_job(job, tmp, args.data_dir), workers)
        one, two = results["1_workers"], results["2_workers"]
        results["speedup_2_vs_1"] = one["command_wall_s"] / two["command_wall_s"]
        results["speedup_2_vs_1_trial_phase"] = (
            one["trial_phase_wall_s"] / two["trial_phase_wall_s"]
        )
        # What the fits allow: two at once each take longer than one alone (2 cores, shared
        # memory bandwidth), so 2 x mean fit alone / mean fit side by side is the ceiling.
        results["speedup_ceiling_from_fits"] = 2 * one["mean_fit_s"] / two["mean_fit_s"]
        results["speedup_of_ceiling"] = (
            results["speedup_2_vs_1_trial_phase"] / results["speedup_ceiling_from_fits"]
        )
        if not args.skip_memory:
            results["memory"] = memory(tmp, args.data_dir, args.memory_trials, reuse=10)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
