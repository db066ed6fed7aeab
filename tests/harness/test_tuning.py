"""The tuning loop on tiny data, on a real local Ray: each oracle, failures, resume, export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console

from harness.errors import UserError
from harness.job import validate_job
from harness.jobdir import JobDir
from harness.tuning import tune
from tests.conftest import PINNED_CNN, tiny_job

QUIET = Console(quiet=True)


def run(tmp_path, **sections):
    spec = validate_job(tiny_job(tmp_path, **sections))
    return spec, tune(spec, QUIET)


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "grid", "hyperband"])
def test_each_oracle_runs_trials_and_records_them(ray_local, tmp_path, algorithm):
    tuner = {
        "algorithm": algorithm,
        "max_trials": 2,
        "epochs": 2 if algorithm == "hyperband" else 1,
        "hyperband_factor": 2,
    }
    spec, outcome = run(tmp_path, tuner=tuner, export={"policy": "none"})
    job_dir = JobDir(spec.job_dir())
    records = job_dir.trial_records()
    assert [r["status"] for r in records] == ["COMPLETED", "COMPLETED"]
    assert outcome.completed == 2 and outcome.best is not None
    for record in records:
        tid = record["trial_id"]
        assert record["score"] is not None
        assert job_dir.checkpoint_path(tid).exists()
        assert list((job_dir.tensorboard_dir / tid / "validation").glob("events.out.tfevents*"))
        assert record["run"]["timings"]["fit_s"] > 0 and record["run"]["replicas"] == 1
    if algorithm != "grid":  # grid walks the space from its first values instead
        first = records[0]["hyperparameters"]["values"]
        assert first["conv_layers"] == 3 and first["optimizer"] == "adam"  # the default point


def test_failed_trial_is_recorded_and_search_goes_on(ray_local, tmp_path):
    pinned = PINNED_CNN
    space = {"name": "tests.helpers.hypermodels:ExplodingCNN", "fixed": pinned}
    spec, outcome = run(
        tmp_path,
        search_space=space,
        export={"policy": "none"},
        tuner={"algorithm": "grid", "max_trials": 2},
    )
    records = JobDir(spec.job_dir()).trial_records()
    by_explode = {r["hyperparameters"]["values"]["explode"]: r for r in records}
    assert len(records) == 2 and by_explode[False]["status"] == "COMPLETED"
    for record in records:  # pinned values hold, including those in conditional scopes
        values = record["hyperparameters"]["values"]
        assert {k: values[k] for k in pinned} == pinned
    assert by_explode[True]["status"] == "FAILED"
    assert "boom: this configuration cannot be built" in by_explode[True]["message"]
    assert outcome.completed == 1 and outcome.failed == 1


def test_resume_keeps_finished_trials(ray_local, tmp_path):
    spec, _ = run(tmp_path, tuner={"max_trials": 1}, export={"policy": "none"})
    job_dir = JobDir(spec.job_dir())
    first = job_dir.trial_records()[0]
    spec, outcome = run(tmp_path, tuner={"max_trials": 2}, export={"policy": "none"})
    records = job_dir.trial_records()
    assert len(records) == 2 and outcome.completed == 2
    assert records[0]["trial_id"] == first["trial_id"]
    assert records[0]["run"]["runs"] == 1  # not trained again
    assert records[0]["score"] == first["score"]


def test_changed_job_is_refused_on_same_directory(ray_local, tmp_path):
    run(tmp_path, tuner={"max_trials": 1}, export={"policy": "none"})
    with pytest.raises(UserError, match="holds a different job.*tuner.algorithm"):
        run(tmp_path, tuner={"max_trials": 1, "algorithm": "bayesian"})


def test_second_driver_is_refused(tmp_path, data_dir):
    spec = validate_job(tiny_job(tmp_path))
    with JobDir(spec.job_dir()).lock():
        with pytest.raises(UserError, match="in use by another harness driver"):
            tune(spec, QUIET)


def test_export_writes_loadable_models_with_manifest(ray_local, tmp_path):
    spec, outcome = run(tmp_path, tuner={"max_trials": 1, "epochs": 2})
    (manifest,) = outcome.exported
    version_dir = JobDir(spec.job_dir()).export_dir / "tiny" / "1"
    assert manifest["path"] == str(version_dir)
    on_disk = json.loads((version_dir / "manifest.json").read_text())
    assert on_disk["trial_id"] == outcome.best[0]
    assert set(on_disk["versions"]) >= {"tensorflow", "keras", "keras_tuner", "harness"}
    assert 0.0 <= on_disk["test_metrics"]["accuracy"] <= 1.0
    assert on_disk["validation_metrics"]["val_accuracy"] == pytest.approx(outcome.best[1])
    assert not list(version_dir.parent.glob(".tmp-*"))

    import keras

    images = np.zeros((3, 28, 28, 1), np.uint8)
    images[:, 6:9, 4:24] = 230  # class 2's band in the tiny data
    reloaded = keras.models.load_model(version_dir / "model.keras")
    keras_probs = reloaded.predict(images.astype("float32"), verbose=0)
    # The SavedModel is loaded by plain TensorFlow in a fresh process, on raw uint8 images.
    script = (
        "import sys, json, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "x = np.array(json.loads(sys.argv[2]), np.uint8)\n"
        "print(json.dumps(m.signatures['serving_default'](image=tf.constant(x))"
        "['probabilities'].numpy().tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(version_dir), json.dumps(images.tolist())],
        capture_output=True,
        text=True,
        check=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin"},
    )
    served = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(served, keras_probs, atol=1e-5)
    assert served.shape == (3, 10) and np.allclose(served.sum(axis=1), 1.0, atol=1e-5)


def test_status_table_marks_best(ray_local, tmp_path):
    spec, outcome = run(tmp_path, export={"policy": "none"})
    result = subprocess.run(
        [sys.executable, "-m", "harness", "status", str(spec.job_dir())],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert f"{outcome.best[0]} ★ best" in result.stdout
    assert "COMPLETED" in result.stdout and "conv_layers=" in result.stdout
    assert "2 completed" in result.stdout


def test_consecutive_failures_stop_the_search_with_records_closed(ray_local, tmp_path):
    space = {
        "name": "tests.helpers.hypermodels:ExplodingCNN",
        "fixed": {"explode": True, "conv_layers": 2},
    }
    spec, outcome = run(
        tmp_path,
        search_space=space,
        export={"policy": "none"},
        resources={"max_concurrent_trials": 1},
        tuner={"max_trials": 5, "max_consecutive_failed_trials": 2},
    )
    records = JobDir(spec.job_dir()).trial_records()
    assert [r["status"] for r in records] == ["FAILED", "FAILED"]  # stopped after 2, not 5
    assert all(r["run"]["status"] == "FAILED" for r in records)
    assert outcome.failed == 2 and outcome.best is None


def test_pinned_value_outside_the_space_is_refused(tmp_path, data_dir):
    spec = validate_job(
        tiny_job(tmp_path, search_space={"name": "image_cnn", "fixed": {"conv_layers": 0}})
    )
    with pytest.raises(UserError, match=r"search_space.fixed.conv_layers: 0 is outside.*2..5"):
        tune(spec, QUIET)


def test_time_budget_spans_resumes(ray_local, tmp_path):
    spec, _ = run(tmp_path, tuner={"max_trials": 1}, export={"policy": "none"})
    state = JobDir(spec.job_dir()).state_path
    assert json.loads(state.read_text())["elapsed_s"] > 0
    # A resume whose budget the earlier run already used up starts no new trial.
    _, outcome = run(
        tmp_path, tuner={"max_trials": 3, "time_budget_s": 0.5}, export={"policy": "none"}
    )
    assert outcome.completed == 1 and len(JobDir(spec.job_dir()).trial_records()) == 1
