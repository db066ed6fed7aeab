"""A warm worker (one process running trial after trial) stays flat in memory and reuses the
data it prepared for an earlier trial with the same data options."""

from __future__ import annotations

import gc
import time
import weakref

import keras_tuner as kt
import numpy as np
import psutil
import pytest

from harness import trial_runner
from harness.job import validate_job
from pipelines import PIPELINES
from tests.conftest import PINNED_CNN, tiny_job


def _request(spec, trial_id: str) -> dict:
    hp = kt.HyperParameters()
    for name, value in PINNED_CNN.items():
        hp.Fixed(name, value)
    return {
        "job": spec.model_dump(mode="json"),
        "job_dir": spec.output_dir,
        "trial_id": trial_id,
        "hyperparameters": hp.get_config(),
        "submitted_at": time.time(),
    }


@pytest.fixture
def warm_worker(data_dir, monkeypatch):
    """This test process as a warm worker: threads are set once per process, and other tests
    may have started TensorFlow already."""
    monkeypatch.setattr("harness.strategy._configured", True)
    monkeypatch.setattr(trial_runner, "_PIPELINES", {})


@pytest.mark.slow
def test_warm_worker_rss_stays_flat(warm_worker, tmp_path):
    spec = validate_job(tiny_job(tmp_path, search_space={"name": "image_cnn", "fixed": PINNED_CNN}))
    rss = []
    for i in range(12):
        trial_runner.run_trial(_request(spec, f"t{i:02d}"))
        rss.append(psutil.Process().memory_info().rss / 2**20)
    warm = rss[4:]
    slope = np.polyfit(np.arange(len(warm)), warm, 1)[0]
    # Before the fix each trial's traced graphs stayed alive: ~8 MB a trial for this tiny CNN.
    assert slope < 1.5, f"a warm worker grows {slope:.2f} MB per trial (RSS MB: {rss})"


def test_release_collects_what_a_trial_left_before_freezing_the_rest(warm_worker):
    """Between trials the worker collects, then freezes what survived (modules, prepared data)
    so later collections skip it: a trial's cyclic garbage must be collected, not frozen."""

    class Node:
        pass

    garbage = Node()
    garbage.cycle = garbage  # only the cycle collector frees it
    gone = weakref.ref(garbage)
    del garbage
    survivor = Node()
    trial_runner._release()
    assert gone() is None
    assert gc.get_freeze_count() > 0  # the survivors are out of later collections
    later = Node()
    later.cycle = later
    gone = weakref.ref(later)
    del later
    trial_runner._release()  # objects made after a freeze are collected by the next release
    assert gone() is None and survivor is not None


def _batches(data, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in data.take(count)]


def test_reused_pipeline_gives_the_batches_of_a_fresh_one(warm_worker, tmp_path, monkeypatch):
    data = {"deterministic": True, "augment": {"flip_horizontal": 0.5, "translation": 0.1}}
    spec = validate_job(tiny_job(tmp_path, data=data))
    hp = kt.HyperParameters()
    reused = trial_runner._pipeline(spec.data)
    first = reused.train_data(hp)
    _batches(first.train, first.steps_per_epoch + 2)  # fills the memory cache (one epoch)
    _batches(first.validation, 100)

    reads = []
    source_dataset = type(reused.source).dataset
    monkeypatch.setattr(
        type(reused.source), "dataset", lambda *a: reads.append(a) or source_dataset(*a)
    )
    # The next trial of this worker, with the same data options: the same pipeline, no re-read.
    assert trial_runner._pipeline(spec.data) is reused
    again = reused.train_data(hp)
    assert reads == []

    fresh = PIPELINES.get(spec.data.pipeline)(spec.data).train_data(hp)
    steps = fresh.steps_per_epoch + 3  # across the repeat: the second epoch's order too
    _assert_same(_batches(again.train, steps), _batches(fresh.train, steps))
    _assert_same(_batches(again.validation, 100), _batches(fresh.validation, 100))


def _assert_same(batches, expected) -> None:
    assert len(batches) == len(expected)
    for (x, y), (x_expected, y_expected) in zip(batches, expected, strict=True):
        np.testing.assert_array_equal(x, x_expected)
        np.testing.assert_array_equal(y, y_expected)


def test_other_data_options_get_a_new_pipeline(warm_worker, tmp_path):
    spec = validate_job(tiny_job(tmp_path))
    other = validate_job(tiny_job(tmp_path, data={"batch_size": 16}))
    first = trial_runner._pipeline(spec.data)
    assert trial_runner._pipeline(other.data) is not first
    assert trial_runner._pipeline(other.data).config.batch_size == 16


def test_warm_up_reads_the_data_a_trial_then_takes_and_leaves_errors_to_it(
    warm_worker, tmp_path, monkeypatch
):
    spec = validate_job(tiny_job(tmp_path))
    trial_runner._prepare_data(spec.worker_form())
    (prepared,) = trial_runner._PIPELINES.values()
    reads = []
    monkeypatch.setattr(type(prepared.source), "dataset", lambda *a: reads.append(a))
    assert trial_runner._pipeline(spec.data) is prepared
    prepared.train_data(kt.HyperParameters())
    assert reads == []  # read in the warm-up, not again for the trial
    # Data the worker cannot read: the warm-up goes on; the trial's own read reports it.
    missing = validate_job(tiny_job(tmp_path, data={"data_dir": str(tmp_path / "nowhere")}))
    trial_runner._prepare_data(missing.worker_form())
    trial_runner._prepare_data({"name": "not a job"})


def test_a_worker_imports_keras_without_its_unused_extras():
    """A worker's warm-up leaves out what `import keras` would add but no trial uses (about 2 s
    of a worker's start); the packages stay importable for the harness's own use."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from harness.trial_runner import warm_up\n"
        "warm_up({'cpus_per_trial': 1})\n"
        "assert 'keras' in sys.modules and 'tensorflow' in sys.modules\n"
        "left_out = [m for m in ('sklearn', 'matplotlib') if m in sys.modules]\n"
        "assert not left_out, left_out\n"
        "from sklearn.model_selection import train_test_split\n"
        "import matplotlib.pyplot\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
