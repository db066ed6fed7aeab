"""`benchmarks/time_to_accuracy.py` measures the harness as it measures the baseline: a point at
every epoch's end (read from the trials' TensorBoard logs), not only when a trial ends."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import time_to_accuracy  # noqa: E402


def write_epochs(run: Path, tag: str, values: list[float]) -> None:
    writer = tf.summary.create_file_writer(str(run))
    with writer.as_default():
        for step, value in enumerate(values):
            tf.summary.scalar(tag, value, step=step)
    writer.close()


def test_every_epoch_end_of_every_trial_is_a_point(tmp_path: Path):
    board = tmp_path / "tensorboard"
    write_epochs(board / "trial_000" / "validation", "epoch_accuracy", [0.7, 0.8, 0.85])
    write_epochs(board / "trial_000" / "train", "epoch_accuracy", [0.99, 0.99, 0.99])
    write_epochs(board / "trial_001" / "validation", "epoch_accuracy", [0.6])
    write_epochs(board / "trial_001" / "validation", "epoch_loss", [0.1])

    points = time_to_accuracy.validation_points(board, "val_accuracy")
    assert sorted(v for _, v in points) == pytest.approx([0.6, 0.7, 0.8, 0.85])
    assert all(t > 1e9 for t, _ in points)  # wall-clock times, as the events recorded them

    train = time_to_accuracy.validation_points(board, "accuracy")
    assert [v for _, v in train] == pytest.approx([0.99, 0.99, 0.99])
    assert time_to_accuracy.validation_points(board, "val_auc") == []


CHILD = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: (out.write_text("stopped"), sys.exit(130)))
out.write_text("ready")
time.sleep(120)
"""


def test_a_stopped_benchmark_stops_the_job_it_runs(tmp_path):
    """A SIGTERM to a benchmark reaches the `harness tune` it runs (here a stand-in that notes
    the signal), and the benchmark exits 130 once that child is gone, leaving nothing behind."""
    import signal
    import subprocess
    import time

    child, flag = tmp_path / "child.py", tmp_path / "flag"
    child.write_text(CHILD)
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import children; "
            f"children.run([sys.executable, {str(child)!r}, {str(flag)!r}])",
        ]
    )
    deadline = time.time() + 30
    while not (flag.exists() and flag.read_text() == "ready") and time.time() < deadline:
        time.sleep(0.05)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 130
    assert flag.read_text() == "stopped"
