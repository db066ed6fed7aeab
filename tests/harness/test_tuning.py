"""The tuning loop on tiny data, on a real local Ray: each oracle, failures, resume, export."""

from __future__ import annotations

import json

import keras_tuner as kt
import numpy as np
import pytest
import ray
from rich.console import Console

from harness import trial_runner
from harness.errors import UserError
from harness.job import validate_job
from harness.jobdir import JobDir
from harness.trial_runner import run_trial, trial_seed, warm_up
from harness.tuning import (
    _check_promotion,
    _prepare_job_dir,
    _write_spec,
    check_same_data,
    tune,
)
from pipelines import PIPELINES
from tests.conftest import PINNED_CNN, learning_rates, tiny_job

QUIET = Console(quiet=True)


def run(tmp_path, **sections):
    spec = validate_job(tiny_job(tmp_path, **sections))
    return spec, tune(spec, QUIET)


# Each oracle drives the loop in test_loop.py (FakeExecutor); here one real run on Ray shows what
# a worker records. Hyperband on Ray: test_scale_out.py's warm-start test.
def test_trials_on_ray_are_recorded(ray_local, tmp_path):
    tuner = {"algorithm": "random", "max_trials": 2, "epochs": 1}
    data = {"deterministic": True}  # with seeded trials: a rerun repeats a trial exactly
    spec, outcome = run(tmp_path, tuner=tuner, data=data, export={"policy": "none"})
    job_dir = JobDir(spec.job_dir())
    records = job_dir.trial_records()
    assert [r["status"] for r in records] == ["COMPLETED", "COMPLETED"]
    assert outcome.completed == 2 and outcome.best is not None
    for record in records:
        tid = record["trial_id"]
        assert record["score"] is not None
        assert job_dir.checkpoint_path(tid).exists()
        assert list((job_dir.trial_board(tid) / "validation").glob("events.out.tfevents*"))
        assert record["run"]["timings"]["fit_s"] > 0 and record["run"]["replicas"] == 1
    first = records[0]["hyperparameters"]["values"]
    assert first["conv_layers"] == 3 and first["optimizer"] == "adam"  # the default point
    # Both trials ran in one warm worker per slot: at most 2 processes for 2 slots.
    assert len({r["run"]["pid"] for r in records}) <= 2
    # Each trial is seeded from tuner.seed and its id: a rerun of the first trial trains the same
    # weights on the same batches and reaches the same metrics, also in a warm process that has
    # just run the other trial (what a warm worker's earlier trials leave must not change it).
    seeds = [r["run"]["seed"] for r in records]
    assert seeds == [trial_seed(spec.tuner.seed, r["trial_id"]) for r in records]
    assert len(set(seeds)) == 2

    def request(record, where):
        return {
            "job": spec.model_dump(mode="json"),
            "job_dir": str(tmp_path / where),
            "trial_id": record["trial_id"],
            "hyperparameters": record["hyperparameters"],
            "submitted_at": 0.0,
        }

    # In a process warmed as an actor is (its data read before any trial): each rerun sends
    # the example images (no driver here draws them), unless told not to; neither the warm-up's
    # reading nor taking the images may change the batches a trial trains on.
    def in_one_process(requests):
        warm_up(spec.resources.model_dump(mode="json"), spec.worker_form())
        assert len(trial_runner._PIPELINES) == 1  # the trials below take the data read here
        return [run_trial(r) for r in requests]

    not_asked = {**request(records[1], "a"), "examples": False}
    first, again = request(records[0], "c"), [request(records[0], d) for d in ("a", "b")]
    reruns = ray.get(ray.remote(in_one_process).remote([first, not_asked, *again]))
    assert reruns.pop(1)["examples"] is None
    assert all(len(rerun["examples"]["images"]) == 8 for rerun in reruns)
    recorded = records[0]["metrics"]["metrics"]
    for rerun in reruns:
        assert rerun["seed"] == seeds[0]
        for metric in ("val_accuracy", "val_loss"):
            value = recorded[metric]["observations"][0]["value"][0]
            assert rerun["epochs"][0]["metrics"][metric] == value


@pytest.mark.xdist_group("finished_job")
def test_failed_trial_is_recorded_and_search_goes_on(finished_job):
    job_dir, outcome = finished_job
    records = job_dir.trial_records()
    by_explode = {r["hyperparameters"]["values"]["explode"]: r for r in records}
    assert len(records) == 2 and by_explode[False]["status"] == "COMPLETED"
    for record in records:  # pinned values hold, including those in conditional scopes
        values = record["hyperparameters"]["values"]
        assert {k: values[k] for k in PINNED_CNN} == PINNED_CNN
    assert by_explode[True]["status"] == "FAILED"
    assert "boom: this configuration cannot be built" in by_explode[True]["message"]
    assert outcome.completed == 1 and outcome.failed == 1


def test_second_driver_is_refused(tmp_path, data_dir):
    spec = validate_job(tiny_job(tmp_path))
    with JobDir(spec.job_dir()).lock():
        with pytest.raises(UserError, match="in use by another harness driver"):
            tune(spec, QUIET)


@pytest.mark.xdist_group("finished_job")
def test_export_writes_loadable_models_with_manifest(finished_job):
    job_dir, outcome = finished_job
    (manifest,) = outcome.exported
    version_dir = job_dir.export_dir / "tiny" / "1"
    assert manifest["path"] == str(version_dir)
    on_disk = json.loads((version_dir / "manifest.json").read_text())
    assert on_disk["trial_id"] == outcome.best[0]
    assert set(on_disk["versions"]) >= {"tensorflow", "keras", "keras_tuner", "harness"}
    assert 0.0 <= on_disk["test_metrics"]["accuracy"] <= 1.0
    assert on_disk["validation_metrics"]["val_accuracy"] == pytest.approx(outcome.best[1])
    assert all(k.startswith("val_") for k in on_disk["validation_metrics"])
    assert set(on_disk["training_metrics"]) == {"accuracy", "loss"}
    assert not list(version_dir.parent.glob(".tmp-*"))
    # Beside the model: readable by others, labels, a real example request, a model card.
    assert (version_dir / "manifest.json").stat().st_mode & 0o044 == 0o044
    labels = (version_dir / "labels.txt").read_text().splitlines()
    assert labels == on_disk["data"]["class_names"] and len(labels) == 10
    request = json.loads((version_dir / "example_request.json").read_text())
    assert request["signature_name"] == "serving_default"
    assert np.asarray(request["instances"]).shape == (2, 28, 28, 1)
    card = (version_dir / "README.md").read_text()
    assert f"trial {outcome.best[0]}" in card and "labels.txt" in card
    assert f"accuracy {on_disk['test_metrics']['accuracy']:.4f}" in card

    import keras

    images = np.zeros((3, 28, 28, 1), np.uint8)
    images[:, 6:9, 4:24] = 230  # class 2's band in the tiny data
    reloaded = keras.models.load_model(version_dir / "model.keras")
    keras_probs = reloaded.predict(images.astype("float32"), verbose=0)
    # The SavedModel serves raw uint8 images (in a process with only TensorFlow:
    # test_observe.py's accuracy test).
    import tensorflow as tf

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    served = serve(image=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(served, keras_probs, atol=1e-5)
    assert served.shape == (3, 10) and np.allclose(served.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.xdist_group("finished_job")
def test_resuming_a_finished_job_keeps_its_export(finished_job):
    """A finished job resumed: nothing to train, and the export there is the best trial's under
    the same settings, so no refit and no second version; `harness export` still adds one."""
    from harness.export import exported_already
    from harness.job import resume_spec

    job_dir, outcome = finished_job
    spec = resume_spec(job_dir)
    again = tune(spec, QUIET)
    assert [m["version"] for m in again.exported] == [1]
    assert again.exported[0]["path"] == outcome.exported[0]["path"]
    assert sorted(p.name for p in (job_dir.export_dir / "tiny").iterdir()) == ["1"]
    trial = next(t for t in job_dir.trial_records() if t["trial_id"] == outcome.best[0])
    assert exported_already(job_dir, spec, trial, "tiny")["version"] == 1
    other = spec.model_copy(
        update={"export": spec.export.model_copy(update={"formats": ["keras"]})}
    )
    assert exported_already(job_dir, other, trial, "tiny") is None  # other settings: again
    assert exported_already(job_dir, spec, {**trial, "trial_id": "elsewhere"}, "tiny") is None
    assert exported_already(job_dir, spec, trial, "no_such_model") is None
    # The same trial trained on (a paused trial continued by a later resume): a new score, or
    # other weights in its checkpoint, make the export there stale.
    assert (
        exported_already(job_dir, spec, {**trial, "score": trial["score"] + 0.01}, "tiny") is None
    )
    checkpoint = job_dir.checkpoint_path(trial["trial_id"])
    weights = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(weights + b"trained on")
        assert exported_already(job_dir, spec, trial, "tiny") is None
    finally:
        checkpoint.write_bytes(weights)
    assert exported_already(job_dir, spec, trial, "tiny")["version"] == 1


@pytest.mark.xdist_group("finished_job")
def test_an_export_without_refit_loads_in_plain_keras_without_warnings(finished_job, tmp_path):
    """Exported from its checkpoint (no refit), the model's optimizer was saved unbuilt, and
    `keras.models.load_model` warned "Skipping variable loading for optimizer" every time."""
    import shutil
    import warnings

    import keras
    from rich.console import Console

    from harness.export import export_trial
    from harness.job import resume_spec
    from harness.jobdir import JobDir

    job_dir, outcome = finished_job
    copy = JobDir(tmp_path / "job")
    shutil.copytree(job_dir.root, copy.root)
    spec = resume_spec(copy)
    spec = spec.model_copy(
        update={"export": spec.export.model_copy(update={"retrain": False, "formats": ["keras"]})}
    )
    trial = next(t for t in copy.trial_records() if t["trial_id"] == outcome.best[0])
    manifest = export_trial(copy, spec, trial, "plain", 1, Console(quiet=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras.models.load_model(f"{manifest['path']}/model.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)], [
        str(w.message) for w in caught
    ]


@pytest.mark.xdist_group("finished_job")
def test_a_damaged_checkpoint_is_one_line_and_a_missing_one_is_said(finished_job, tmp_path):
    """A probe's truncated checkpoint gave h5py's traceback from `harness export`; a deleted
    one silently exported the next trial as if it were the best."""
    import shutil

    from rich.console import Console

    from harness.export import best_trials, export_trial
    from harness.job import resume_spec
    from harness.jobdir import JobDir

    job_dir, outcome = finished_job
    copy = JobDir(tmp_path / "job")
    shutil.copytree(job_dir.root, copy.root)
    spec = resume_spec(copy)
    spec = spec.model_copy(update={"export": spec.export.model_copy(update={"retrain": False})})
    trial = next(t for t in copy.trial_records() if t["trial_id"] == outcome.best[0])
    checkpoint = copy.checkpoint_path(trial["trial_id"])
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(UserError, match=r"checkpoint .* cannot be read \(.*truncated"):
        export_trial(copy, spec, trial, "damaged", 1, Console(quiet=True))

    # A better trial whose checkpoint is gone: passed over, and the user is told.
    better = {**trial, "trial_id": "lost", "score": trial["score"] + 0.5}
    records = [better, *copy.trial_records()]
    copy.trial_records = lambda: records
    console = Console(record=True, width=300)
    assert [t["trial_id"] for t in best_trials(copy, 1, console)] == [trial["trial_id"]]
    said = console.export_text()
    assert "warning: trial lost ranks above the export" in said and "is missing" in said
    assert [t["trial_id"] for t in best_trials(copy, 1)] == [trial["trial_id"]]


def test_pinned_value_outside_the_space_is_refused(tmp_path, data_dir):
    spec = validate_job(
        tiny_job(tmp_path, search_space={"name": "image_cnn", "fixed": {"conv_layers": 0}})
    )
    with pytest.raises(UserError, match=r"search_space.fixed.conv_layers: 0 is outside.*2..5"):
        tune(spec, QUIET)
    # Refused before its first write: a new job leaves no directory (of only its lock).
    assert not (tmp_path / "job").exists()
    missing = tiny_job(tmp_path, data={"data_dir": str(tmp_path / "empty")})
    with pytest.raises(UserError, match="fashion_mnist"):
        tune(validate_job(missing), QUIET)
    assert not (tmp_path / "job").exists()
    (tmp_path / "job").mkdir()  # a directory the user made: kept
    with pytest.raises(UserError, match="outside"):
        tune(spec, QUIET)
    assert (tmp_path / "job").is_dir() and not (tmp_path / "job" / "job.json").exists()


def test_resume_with_other_replicas_per_trial_is_refused(tmp_path, data_dir):
    spec = validate_job(tiny_job(tmp_path))
    job_dir = JobDir(spec.job_dir())
    job_dir.root.mkdir(parents=True)
    _prepare_job_dir(job_dir, spec, overwrite=False)
    _write_spec(job_dir, spec)
    more_slots = validate_job(tiny_job(tmp_path, resources={"max_concurrent_trials": 1}))
    _prepare_job_dir(job_dir, more_slots, overwrite=False)  # scheduling may change
    mirrored = validate_job(tiny_job(tmp_path, resources={"logical_cpu_devices": 2}))
    with pytest.raises(UserError, match="2 replica\\(s\\) per trial where the job started with 1"):
        _prepare_job_dir(job_dir, mirrored, overwrite=False)


def test_resume_on_other_data_is_refused_and_a_moved_copy_noted(tmp_path, data_dir):
    spec = validate_job(tiny_job(tmp_path))
    job_dir = JobDir(spec.job_dir())
    job_dir.root.mkdir(parents=True)
    meta = PIPELINES.get(spec.data.pipeline)(spec.data).describe()
    record = check_same_data(job_dir, spec, meta, QUIET)
    assert record["data_dir"] == str(data_dir) and record["num_train"] == meta.num_train
    (job_dir.root / "data.json").write_text(json.dumps({**record, "data_dir": "/elsewhere"}))
    console = Console(record=True, width=200)
    check_same_data(job_dir, spec, meta, console)
    assert "(was /elsewhere); the same data" in console.export_text()
    (job_dir.root / "data.json").write_text(json.dumps({**record, "num_test": 10_000}))
    with pytest.raises(UserError, match="the data differ from the job's start \\(num_test"):
        check_same_data(job_dir, spec, meta, QUIET)
    # A stratified job started before the split became scikit-learn's validates on other
    # examples: refused. (Unstratified splits did not change and record no method.)
    assert "split" not in record
    stratified = validate_job(tiny_job(tmp_path, data={"stratify": True}))
    (job_dir.root / "data.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="the data differ from the job's start \\(split: None"):
        check_same_data(job_dir, stratified, meta, QUIET)


def test_resume_on_a_user_file_edited_in_place_is_refused(tmp_path):
    """A user's npz under the same path with other contents (labels flipped) is other data:
    a resume would rank new trials on it beside scores from the old. Copied unchanged: fine."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 255, (40, 8, 8, 1), dtype=np.uint8),
        "y_train": rng.integers(0, 2, 40),
        "x_test": rng.integers(0, 255, (10, 8, 8, 1), dtype=np.uint8),
        "y_test": rng.integers(0, 2, 10),
    }
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    job = tiny_job(tmp_path)
    job["data"] = {"pipeline": "image_classification", "arrays": str(path), "batch_size": 8}
    spec = validate_job(job)
    job_dir = JobDir(spec.job_dir())
    job_dir.root.mkdir(parents=True)
    meta = PIPELINES.get(spec.data.pipeline)(spec.data).describe()
    record = check_same_data(job_dir, spec, meta, QUIET)
    assert list(record["contents"]) == [str(path)] and "data_dir" not in record
    (job_dir.root / "data.json").write_text(json.dumps(record))
    np.savez(path, **arrays)  # written again, same bytes: the same data
    check_same_data(job_dir, spec, meta, QUIET)
    np.savez(path, **{**arrays, "y_train": 1 - arrays["y_train"]})
    with pytest.raises(UserError, match=r"data differ .*\(contents\..*mine.npz: 'sha256:") as e:
        check_same_data(job_dir, spec, meta, QUIET)
    assert "data dir then" not in str(e.value)
    from harness.cli import check_data_unchanged  # `harness export` scores the test split too

    _write_spec(job_dir, spec)
    with pytest.raises(UserError, match="data differ .*mine.npz"):
        check_data_unchanged(job_dir)
    # A job started before contents were recorded resumes as it did.
    (job_dir.root / "data.json").write_text(
        json.dumps({k: v for k, v in record.items() if k != "contents"})
    )
    check_same_data(job_dir, spec, meta, QUIET)


def test_the_header_names_the_data_source(tmp_path):
    from pipelines.image import ImageClassificationConfig

    assert ImageClassificationConfig(dataset="mnist").source() == "mnist"
    assert ImageClassificationConfig(arrays="x.npz").source() == "arrays x.npz"
    assert ImageClassificationConfig(folder="imgs").source() == "folder imgs"


def test_promotion_inside_an_epoch_is_refused_for_a_space_with_its_own_fit(tmp_path):
    """A continuation from a rung inside an epoch splits `fit` in two; a space that lays out
    training phases over the epochs in its own `fit` (transfer) would split them wrongly."""

    class Phased(kt.HyperModel):
        def fit(self, hp, model, *args, **kwargs):
            return model.fit(*args, **kwargs)

    pruning = {"rule": "asha", "grace_epochs": 0.5, "reduction_factor": 2, "promotion": True}
    spec = validate_job(tiny_job(tmp_path, tuner={"epochs": 2, "pruning": pruning}))
    with pytest.raises(UserError, match="rung 0.5 epochs, inside an epoch.*whole-number"):
        _check_promotion(spec, Phased())
    _check_promotion(spec, kt.HyperModel())  # the plain fit splits
    whole = {**pruning, "grace_epochs": 1}
    _check_promotion(
        validate_job(tiny_job(tmp_path, tuner={"epochs": 4, "pruning": whole})), Phased()
    )


@pytest.mark.slow
def test_a_paused_trial_continues_from_the_weights_it_paused_with(tmp_path, data_dir, monkeypatch):
    """ASHA's promotion, the worker's side: a trial paused at a rung inside an epoch keeps its
    weights from there; its continuation loads them, trains that epoch again and the rest,
    checks only the rungs after its own, adds to the trial's TensorBoard run instead of
    clearing it, keeps the earlier best checkpoint unless it beats it, and takes its learning
    rate schedule up at the step it paused."""
    from harness.channel import EpochChannel
    from harness.pruning import make_pruner

    monkeypatch.setattr("harness.strategy._configured", True)  # threads: set once per process
    pruning = {"rule": "asha", "grace_epochs": 0.5, "reduction_factor": 2, "promotion": True}
    job = tiny_job(tmp_path, tuner={"epochs": 2, "pruning": pruning}, data={"deterministic": True})
    spec = validate_job(job)
    job_dir = JobDir(spec.output_dir)
    hp = kt.HyperParameters()
    # A cosine schedule over the job's 2 epochs, no warm-up: at 0 when the plan ends.
    for name, value in {**PINNED_CNN, "lr_schedule": "cosine", "warmup_fraction": 0.0}.items():
        hp.Fixed(name, value)

    def run(channel=None, continue_from=None, trial_id="0003"):
        request = {
            "job": spec.model_dump(mode="json"),
            "job_dir": spec.output_dir,
            "trial_id": trial_id,
            "hyperparameters": hp.get_config(),
            "submitted_at": 0.0,
            "channel": channel,
        }
        if continue_from:
            request["continue_from"] = continue_from
        return run_trial(request)

    channel = EpochChannel(make_pruner(spec.tuner.pruning, 2), "val_accuracy", "max")
    channel.seed({"a": [(0.5, 2.0)]})  # a bar no model reaches: the trial pauses at 0.5
    paused = run(channel)
    assert paused["pruned"]["epochs_done"] == 0.5 and "paused" in paused["pruned"]["reason"]
    assert job_dir.paused_path("0003", 0.5).exists()
    checkpoint = job_dir.checkpoint_path("0003")
    saved = checkpoint.stat().st_mtime_ns
    board = job_dir.trial_board("0003")
    drawn = set((board / "train").glob("events.out.tfevents*"))
    # Continued with a best so far that nothing beats: the checkpoint stays the earlier one.
    continued = run(continue_from={"epochs_done": 0.5, "best": 2.0})
    assert [e["epoch"] for e in continued["epochs"]] == [0, 1] and continued["checks"] == []
    assert checkpoint.stat().st_mtime_ns == saved
    # The rest of the paused epoch, then epoch 2: two fits, each a new events file beside the first.
    assert drawn < set((board / "train").glob("events.out.tfevents*")), "earlier curve cleared"
    # Its schedule went on from the paused step: the plan's end at a rate of 0, where a
    # schedule that lost the half epoch would still be at a seventh of the peak.
    paused_rate, _, ended = learning_rates(board)
    assert paused_rate > 1e-4 and ended < 1e-3 * paused_rate
    # It started from the paused weights: its first epoch trains better than a fresh model's.
    fresh = run(trial_id="0003")  # same seed, same batches, from new weights
    first = continued["epochs"][0]["metrics"]["loss"]
    assert first < fresh["epochs"][0]["metrics"]["loss"]


def _pinned_trial(tmp_path, pruning, channel=None):
    """Trial 0007 of the pinned tutorial CNN, 2 epochs under `pruning`, run in this process;
    returns the job spec and the trial's result."""
    tuner = {"epochs": 2, "pruning": pruning}
    spec = validate_job(tiny_job(tmp_path, tuner=tuner, data={"deterministic": True}))
    hp = kt.HyperParameters()
    for name, value in PINNED_CNN.items():
        hp.Fixed(name, value)
    request = {
        "job": spec.model_dump(mode="json"),
        "job_dir": spec.output_dir,
        "trial_id": "0007",
        "hyperparameters": hp.get_config(),
        "submitted_at": 0.0,
        "channel": channel,
    }
    return spec, run_trial(request)


@pytest.mark.slow
def test_a_trial_validates_inside_an_epoch_and_stops_there(tmp_path, data_dir, monkeypatch):
    """ASHA with a rung at half an epoch: the worker validates mid-epoch without disturbing the
    epoch's training (same weights, same logged metrics as a run without the check), and a
    losing trial stops at that step, its partial epoch validated and recorded."""
    from harness.channel import EpochChannel
    from harness.pruning import make_pruner

    monkeypatch.setattr("harness.strategy._configured", True)  # threads: set once per process

    half = {"rule": "asha", "grace_epochs": 0.5, "reduction_factor": 2}
    spec, checked = _pinned_trial(tmp_path, half)
    _, plain = _pinned_trial(tmp_path, {"rule": "none"})
    assert [c["epochs_done"] for c in checked["checks"]] == [0.5] and plain["checks"] == []
    assert 0 <= checked["checks"][0]["metrics"]["val_accuracy"] <= 1
    assert checked["pruned"] is None and len(checked["epochs"]) == 2
    assert checked["epochs"] == plain["epochs"]  # the check changed nothing in training

    channel = EpochChannel(make_pruner(spec.tuner.pruning, 2), "val_accuracy", "max")
    channel.seed({"a": [(0.5, 2.0)], "b": [(0.5, 3.0)]})  # a bar no model reaches
    _, stopped = _pinned_trial(tmp_path, half, channel)
    assert (
        stopped["pruned"]["epochs_done"] == 0.5
        and "after 0.5 epochs" in (stopped["pruned"]["reason"])
    )
    assert stopped["checks"] == checked["checks"]  # the same weights at the same step
    assert len(stopped["epochs"]) == 1  # the partial epoch, validated as Keras ends it
    assert channel.drain() == []  # it was not reported to the rule as a whole epoch


@pytest.mark.slow
def test_averaged_rungs_rank_the_average_and_leave_training_alone(tmp_path, data_dir, monkeypatch):
    """`rung_averaging`: at each rung, inside an epoch and at an epoch's end, the rule ranks the
    averaged weights' validation; training, the epochs' metrics and live progress are those of
    a run without it, and a trial stopped at a whole-epoch rung stops on the averaged score."""
    from harness.channel import EpochChannel
    from harness.pruning import make_pruner

    monkeypatch.setattr("harness.strategy._configured", True)  # threads: set once per process

    averaged = {"rule": "asha", "grace_epochs": 0.5, "reduction_factor": 2, "rung_averaging": 0.5}
    spec, checked = _pinned_trial(tmp_path, averaged)
    _, plain = _pinned_trial(tmp_path, {"rule": "none"})
    assert [(c["epochs_done"], c["averaged"]) for c in checked["checks"]] == [
        (0.5, True),
        (1, True),
    ]
    assert checked["epochs"] == plain["epochs"]  # the averages changed nothing in training
    scores = [c["metrics"]["val_accuracy"] for c in checked["checks"]]
    averaged_loss = checked["checks"][1]["metrics"]["val_loss"]
    assert averaged_loss != checked["epochs"][0]["metrics"]["val_loss"]  # not the epoch's own

    channel = EpochChannel(make_pruner(spec.tuner.pruning, 2), "val_accuracy", "max")
    channel.seed({"a": [(1, 2.0)], "b": [(1, 3.0)]})  # a bar at the 1-epoch rung
    _, stopped = _pinned_trial(tmp_path, averaged, channel)
    assert stopped["pruned"]["epochs_done"] == 1 and "after 1 epochs" in stopped["pruned"]["reason"]
    assert stopped["checks"] == checked["checks"]
    assert channel.pruner.recorded[1]["0007"] == max(scores)  # the rule's best so far
    [report] = channel.drain()  # live progress: the epoch's own metrics
    assert report["metrics"] == stopped["epochs"][0]["metrics"] == plain["epochs"][0]["metrics"]


@pytest.mark.slow
def test_anneal_at_rungs_lays_the_trial_s_schedule_out_in_stretches(
    tmp_path, data_dir, monkeypatch
):
    """`anneal_at_rungs`: the trial's plan restarts its schedule at each rung's step (half an
    epoch and one epoch here), so what the space builds anneals there; without it, none."""
    from search_spaces.base import SearchSpace

    monkeypatch.setattr("harness.strategy._configured", True)  # threads: set once per process
    plans = []
    set_plan = SearchSpace.set_training_plan

    def spy(self, *args, **kwargs):
        set_plan(self, *args, **kwargs)
        plans.append(self.training_plan)

    monkeypatch.setattr(SearchSpace, "set_training_plan", spy)
    pruning = {"rule": "asha", "grace_epochs": 0.5, "reduction_factor": 2, "anneal_at_rungs": True}
    _, result = _pinned_trial(tmp_path, pruning)
    _, plain = _pinned_trial(tmp_path, {**pruning, "anneal_at_rungs": False})
    steps = plans[0].steps_per_epoch
    assert plans[0].restarts == (round(steps / 2), steps) and plans[1].restarts == ()
    assert len(result["epochs"]) == len(plain["epochs"]) == 2


class _Walk:
    """A stand-in model for `AveragedRungs`: one float weight equal to the steps trained, one
    integer weight, and a validation that scores the float weight as it stands."""

    metrics_variables = []

    def __init__(self):
        self.steps = 0
        self.weights = [np.zeros(2, np.float32), np.array([7])]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]

    def evaluate(self, validation, verbose=0, return_dict=True):
        self.seen = self.get_weights()
        return {"accuracy": float(self.weights[0][0])}


def _walk(callback, model, epochs, steps_per_epoch, every=1, first=(0, 0)):
    """Trains `model` by `every` steps a batch call (steps_per_execution) from `first`."""
    for epoch in range(first[0], epochs):
        callback.on_epoch_begin(epoch)
        start = first[1] if epoch == first[0] else 0
        for batch in range(every - 1, steps_per_epoch - start, every):
            model.steps += every
            model.weights[0][:] = model.steps
            model.weights[1][:] = model.steps  # not floating point: never averaged
            callback.on_train_batch_end(batch)


@pytest.mark.parametrize("every", [1, 2])
def test_averaged_rungs_rank_the_mean_of_the_weights_on_the_way_there(every):
    """Rungs at 0.25 and 1 epoch of 8 steps: the first averages steps 1-2 (all the way from
    the start), the second the last half of steps 3-8 (6-8); the trained weights come back."""
    from harness.callbacks import AveragedRungs, EpochRecorder

    recorder = EpochRecorder.__new__(EpochRecorder)
    recorder.pruned, recorder.ranked, checked = None, {}, []
    recorder.check = lambda point, metrics, averaged: checked.append((point, metrics, averaged))
    model = _Walk()
    first = AveragedRungs(recorder, [0.25], 1.0, 8, validation=None)
    first.set_model(model)
    _walk(first, model, 1, 8, every)
    assert checked == [(0.25, {"val_accuracy": 1.5 if every == 1 else 2.0}, True)]
    half = AveragedRungs(recorder, [0.25, 1], 0.5, 8, validation=None)
    assert [(at, sampled) for at, _, sampled in half.targets] == [(2, [2]), (8, [6, 7, 8])]
    model = _Walk()
    half.set_model(model)
    _walk(half, model, 1, 8, every)
    # Two steps a call: step 6 alone, then 7 and 8 together (both the weights after step 8).
    expected = 7.0 if every == 1 else (6 + 8 + 8) / 3
    assert recorder.ranked == {1: {"val_accuracy": pytest.approx(expected)}}
    assert model.seen[1][0] == 8  # an integer weight is not averaged
    assert model.weights[0][0] == 8 and model.weights[1][0] == 8  # trained weights back


def test_averaged_rungs_of_a_continued_trial_start_where_it_took_up():
    """Continued from the rung at 0.25 epochs (step 2 of 8): the next rung averages from there."""
    from harness.callbacks import AveragedRungs

    rungs = AveragedRungs(None, [1, 4], 1.0, 8, validation=None, start=(0, 2), samples=3)
    assert [(at, sampled) for at, _, sampled in rungs.targets] == [
        (8, [3, 6, 8]),
        (32, [9, 21, 32]),
    ]


def test_a_subset_larger_than_the_data_is_noted_at_the_start(tmp_path, data_dir):
    """`train_examples` (train + validation) or `test_examples` set above what the data holds
    quietly meant all of it; the job's start now says so under its data line."""
    from harness.channel import make_channel
    from harness.execution import FakeExecutor
    from pipelines.base import subset_notes

    def one_epoch(request):
        yield {"loss": 1.0, "val_accuracy": 0.5}

    data = {"train_examples": 10**6, "test_examples": 5}
    spec = validate_job(
        tiny_job(tmp_path, data=data, tuner={"max_trials": 1}, export={"policy": "none"})
    )
    meta = PIPELINES.get(spec.data.pipeline)(spec.data).describe()
    held = meta.num_train + meta.num_validation
    assert held < 10**6 and meta.num_test == 5
    expected = f"data.train_examples=1000000 is more than the data holds; all {held} are used"
    assert subset_notes(spec.data, meta) == [expected]
    console = Console(record=True, width=200)
    tune(spec, console, executor=FakeExecutor(one_epoch, make_channel(spec)))  # closes it
    assert f"note: {expected}" in console.export_text()
    # Unset, the whole data is the default: nothing to say (nor of a generator's own count).
    default = validate_job(tiny_job(tmp_path)).data
    assert subset_notes(default, PIPELINES.get(default.pipeline)(default).describe()) == []
