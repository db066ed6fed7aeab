"""Every shipped job's smoke variant runs end to end on tiny data (the big_vision `runlocal`)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.console import Console

from harness.job import load_job
from harness.jobdir import JobDir
from harness.tuning import tune
from tests.conftest import REPO

JOBS = [
    "cifar10_cnn",
    "fashion_mnist_cnn",
    "fashion_mnist_transfer",
    "gan_fashion_mnist",
    "imdb_rnn",
    "timeseries_lstm",
]


@pytest.mark.parametrize("name", JOBS)
def test_smoke_variant_runs(ray_local, tmp_path, name):
    # Every space that can be refit is, so export.retrain is exercised for each of them.
    overrides = [f"output_dir={tmp_path / 'job'}", "data.download=false", "export.retrain=true"]
    if name == "timeseries_lstm":
        csv = tmp_path / "demo.csv"
        subprocess.run(
            [sys.executable, "benchmarks/make_demo_series.py", str(csv), "--hours", "600"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        overrides = [f"output_dir={tmp_path / 'job'}", f"data.path={csv}"]
    spec = load_job(REPO / "jobs" / f"{name}.yaml", overrides, smoke=True)
    outcome = tune(spec, Console(quiet=True))
    records = JobDir(spec.job_dir()).trial_records()
    failures = [r.get("message", "")[:500] for r in records if r["status"] != "COMPLETED"]
    assert not failures, failures
    assert outcome.completed == len(records) >= 1
    if spec.export.policy != "none":
        (manifest,) = outcome.exported[:1]
        if spec.export.retrain:
            assert manifest["refit"]["epochs"] >= 1
        assert (
            JobDir(spec.job_dir()).export_dir / manifest["model_name"] / "1" / "saved_model.pb"
        ).exists()
