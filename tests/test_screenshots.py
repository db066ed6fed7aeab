"""`benchmarks/tensorboard_screenshots.py` renders a job's dashboards in headless Chromium
(skipped where no Chromium is installed: `apt install chromium-headless-shell`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from tensorboard_screenshots import find_browser  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_browser() is None, reason="no headless Chromium installed"),
]


def test_each_dashboard_is_saved_as_a_png(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "job" / "tensorboard" / "trial_00"))
    with writer.as_default():
        for step in range(3):
            tf.summary.scalar("epoch_accuracy", 0.5 + 0.1 * step, step=step)
    writer.close()
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/tensorboard_screenshots.py",
            str(tmp_path / "job"),
            "--out",
            str(tmp_path / "img"),
            "--wait-s",
            "8",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr
    for name in ("hparams", "scalars", "images"):
        png = (tmp_path / "img" / f"tensorboard_{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_a_folder_without_tensorboard_is_one_error_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "benchmarks/tensorboard_screenshots.py", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and out.stderr.strip().startswith("error: ")
    assert "no tensorboard/ folder" in out.stderr and len(out.stderr.strip().splitlines()) == 1
