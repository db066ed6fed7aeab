"""The command line as a user meets it: help, one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.conftest import REPO, tiny_job


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_help_explains_each_command():
    out = harness("--help").stdout
    for command in ("tune", "resume", "status", "export", "validate", "data"):
        assert command in out


def test_bad_job_file_is_one_line_and_exit_2(tmp_path):
    job = tiny_job(tmp_path, tuner={"algorithm": "bayes"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(job))
    result = harness("tune", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "tuner.algorithm" in lines[0] and "'bayes'" in lines[0]


def test_bad_override_is_reported(tmp_path):
    result = harness("validate", "jobs/quickstart.yaml", "--set", "tuner.max_trials=-1")
    assert result.returncode == 2 and "tuner.max_trials" in result.stderr


def test_missing_offline_dataset_says_what_to_import(tmp_path):
    job = tiny_job(tmp_path)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    result = harness("tune", str(path), env={"HARNESS_DATA_DIR": str(tmp_path / "empty")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "harness data import fashion_mnist" in result.stderr
    assert "fashion_mnist.npz" in result.stderr


def test_data_import_of_missing_or_corrupt_file(tmp_path):
    result = harness(
        "data", "import", "fashion_mnist", str(tmp_path / "nope.npz"), "--data-dir", str(tmp_path)
    )
    assert result.returncode == 2 and "no such file" in result.stderr
    corrupt = tmp_path / "fashion_mnist.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    result = harness("data", "import", "fashion_mnist", str(corrupt), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and str(corrupt) in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_importer_lists_known(tmp_path):
    result = harness("data", "import", "fashion", str(tmp_path / "x.npz"))
    assert result.returncode == 2 and "fashion_mnist" in result.stderr
