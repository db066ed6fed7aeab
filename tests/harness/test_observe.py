"""TensorBoard HParams data read back with TensorBoard's own loaders; predict; TFLite export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins.hparams import metadata

from tests.conftest import PINNED_CNN, REPO

# The job these tests read (conftest's `finished_job`) runs once, in one test process.
pytestmark = pytest.mark.xdist_group("finished_job")


def hparams_sessions(log_dir) -> tuple[dict, plugin_event_multiplexer.EventMultiplexer]:
    """{run: {hyperparameter: value proto}} of every session, and the loaded multiplexer."""
    return sessions_of(log_dir, metadata.SESSION_START_INFO_TAG)


def sessions_of(log_dir, tag: str) -> tuple[dict, plugin_event_multiplexer.EventMultiplexer]:
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(log_dir))
    mux.Reload()
    found = {}
    for run, tags in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        if tag == metadata.SESSION_START_INFO_TAG and tag in tags:
            info = metadata.parse_session_start_info_plugin_data(tags[tag])
            found[run] = {k: v for k, v in info.hparams.items()}
        elif tag == metadata.SESSION_END_INFO_TAG and tag in tags:
            found[run] = metadata.parse_session_end_info_plugin_data(tags[tag]).status
    return found, mux


def value_of(proto):
    kind = proto.WhichOneof("kind")
    return getattr(proto, kind)


def test_every_trial_is_in_the_hparams_data(finished_job):
    job_dir, _ = finished_job
    sessions, mux = hparams_sessions(job_dir.tensorboard_dir)
    records = {f"trial_{r['trial_id']}": r for r in job_dir.trial_records()}
    assert set(sessions) == set(records)  # runs named for people; failed trial included
    for run, hparams in sessions.items():
        values = records[run]["hyperparameters"]["values"]
        # Integers as text, so the dashboard shows 16, not 16.000; the rest as numbers.
        expected = {k: str(v) if type(v) is int else v for k, v in values.items()}
        assert {k: value_of(v) for k, v in hparams.items()} == pytest.approx(expected)
        assert value_of(hparams["filters_0"]) == "16" and value_of(hparams["dropout"]) == 0.0
    experiment = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)["."]
    config = metadata.parse_experiment_plugin_data(experiment[metadata.EXPERIMENT_TAG])
    domains = {h.name: [value_of(v) for v in h.domain_discrete.values] for h in config.hparam_infos}
    assert domains["filters_0"] == ["16"] and domains["learning_rate"] == [0.003]
    assert {h.name for h in config.hparam_infos} >= set(PINNED_CNN) | {"explode"}
    # Tuned before pinned: TensorBoard shows the first 5 at first.
    names = [h.name for h in config.hparam_infos]
    assert names[0] == "explode" and set(names[-len(PINNED_CNN) :]) == set(PINNED_CNN)
    completed = next(r for r in records.values() if r["status"] == "COMPLETED")
    events = mux.Tensors(f"trial_{completed['trial_id']}/validation", "epoch_accuracy")
    final = float(tf.make_ndarray(events[-1].tensor_proto))
    observed = completed["metrics"]["metrics"]["val_accuracy"]["observations"][-1]["value"][0]
    assert final == pytest.approx(observed, abs=1e-6)


def test_sessions_end_with_status_best_score_and_reason(finished_job):
    from tensorboard.plugins.hparams import api_pb2

    job_dir, _ = finished_job
    ends, mux = sessions_of(job_dir.tensorboard_dir, metadata.SESSION_END_INFO_TAG)
    records = {f"trial_{r['trial_id']}": r for r in job_dir.trial_records()}
    expected = {
        run: api_pb2.STATUS_FAILURE if r["status"] == "FAILED" else api_pb2.STATUS_SUCCESS
        for run, r in records.items()
    }
    assert ends == expected and set(expected.values()) == {1, 2}  # one of each
    experiment = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)["."]
    config = metadata.parse_experiment_plugin_data(experiment[metadata.EXPERIMENT_TAG])
    assert config.metric_infos[0].name.tag == "trial/best_val_accuracy"
    for run, record in records.items():
        card = mux.Tensors(run, "trial/summary")[0].tensor_proto.string_val[0].decode()
        assert card.startswith(f"**{record['status']}**")
        if record["status"] == "FAILED":
            assert "boom: this configuration cannot be built" in card
            assert not mux.GetAccumulator(run).Tags()["tensors"].count("trial/best_val_accuracy")
            continue
        (best,) = mux.Tensors(run, "trial/best_val_accuracy")
        # The tuner's ranking value, at the tuner's best epoch (not the last epoch's value).
        assert float(tf.make_ndarray(best.tensor_proto)) == pytest.approx(record["score"])
        assert best.step == record["best_step"]


def test_image_summaries_for_examples_and_confusion(finished_job):
    job_dir, outcome = finished_job
    _, mux = hparams_sessions(job_dir.tensorboard_dir)
    best = outcome.best[0]
    # The job augments nothing: one labelled grid, once for the job, named for what it is.
    (examples,) = mux.Tensors("examples", "training_examples")
    assert len(examples.tensor_proto.string_val) == 3  # width, height, one png
    assert not any(run.startswith("trial_") and "examples" in run for run in mux.Runs())
    confusion = mux.Tensors(f"trial_{best}/confusion", "confusion_matrix")
    assert confusion and len(confusion[0].tensor_proto.string_val) == 3  # width, height, png
    width = int(confusion[0].tensor_proto.string_val[0])
    assert width > 400  # a drawn figure with axes and class names, not a bare 10x10 grid
    # The counts: every scored test example once, the diagonal the exported accuracy.
    (table,) = mux.Tensors(f"trial_{best}/confusion", "confusion_matrix_counts")
    rows = table.tensor_proto.string_val[0].decode().splitlines()[2:]
    counts = np.array([[int(v) for v in row.strip("| ").split(" | ")[1:]] for row in rows])
    manifest = outcome.exported[0]
    assert counts.shape == (10, 10) and counts.sum() == manifest["data"]["num_test"]
    accuracy = np.trace(counts) / counts.sum()
    assert accuracy == pytest.approx(manifest["test_metrics"]["accuracy"], abs=1e-6)


def test_saved_model_accuracy_in_a_plain_tensorflow_process(finished_job, tiny_npz, tmp_path):
    """Only TensorFlow and NumPy in the child: raw uint8 test images in, accuracy out."""
    job_dir, outcome = finished_job
    version = job_dir.export_dir / "tiny" / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "d = np.load(sys.argv[2]); x, y = d['x_test'][..., None], d['y_test']\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "p = serve(image=tf.constant(x))['probabilities'].numpy()\n"
        "assert 'harness' not in sys.modules\n"
        "print((p.argmax(1) == y).mean())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(version), str(tiny_npz)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin"},
    )
    accuracy = float(out.stdout.strip().splitlines()[-1])
    assert manifest["test_metrics"]["accuracy"] == pytest.approx(accuracy, abs=0.001)
    assert manifest["data"]["num_test"] == 200


def test_predict_command_on_exported_model(finished_job, tmp_path):
    job_dir, outcome = finished_job
    image = np.zeros((28, 28, 1), np.uint8)
    image[8:11, 4:24] = 230  # the tiny data's class-3 band
    path = tmp_path / "three.png"
    path.write_bytes(tf.io.encode_png(image).numpy())
    result = subprocess.run(
        [sys.executable, "-m", "harness", "predict", str(job_dir.export_dir / "tiny"), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout and "Dress" in result.stdout  # class 3 of fashion_mnist
    # A language model's options are refused for a classifier, not ignored.
    from harness.errors import UserError
    from harness.predict import predict

    export = job_dir.export_dir / "tiny"
    for option, value in (("length", 30), ("temperature", 0.5)):
        with pytest.raises(UserError, match=f"--{option}: .* is not a language model; --{option} "):
            predict(export, [str(path)], **{option: value})
    assert [row["class"] for row in predict(export, [str(path)], top=2)[:1]] == ["Dress"]


def test_tflite_gives_the_same_top_class(finished_job):
    job_dir, _ = finished_job
    version = job_dir.export_dir / "tiny" / "1"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(4, 28, 28, 1)).astype(np.uint8)
    for c in range(4):
        images[c, 2 * c + 2 : 2 * c + 5, 4:24] = 230
    served = (
        tf.saved_model.load(str(version))
        .signatures["serving_default"](image=tf.constant(images))["probabilities"]
        .numpy()
    )
    interpreter = tf.lite.Interpreter(model_path=str(version / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    lite = np.concatenate([runner(image=images[i : i + 1])["probabilities"] for i in range(4)])
    assert (lite.argmax(axis=1) == served.argmax(axis=1)).all()


def test_integer_domains_are_text():
    import keras_tuner as kt

    from harness.hparams import MAX_LISTED_INTEGERS, _domain

    hps = kt.HyperParameters()
    hps.Int("layers", 1, 3)
    hps.Int("width", 2, 64, step=2, sampling="log")
    hps.Int("seed", 0, MAX_LISTED_INTEGERS)  # one value too many to list
    hps.Choice("units", [256, 64, 128])
    hps.Choice("act", ["relu", "gelu"])
    hps.Float("lr", 1e-4, 1e-2, sampling="log")
    hps.Boolean("bn")
    hps.Fixed("blocks", 3)
    domains = {h.name: _domain(h) for h in hps.space}
    # TensorBoard keeps a text domain sorted as text.
    assert domains["layers"].values == ["1", "2", "3"]
    assert domains["width"].values == sorted(["2", "4", "8", "16", "32", "64"])
    assert domains["seed"] is None  # the dashboard then lists the values trials used
    assert domains["units"].values == ["128", "256", "64"]
    assert domains["act"].values == ["gelu", "relu"]
    assert (domains["lr"].min_value, domains["lr"].max_value) == (1e-4, 1e-2)
    assert domains["bn"].values == [False, True] and domains["blocks"].values == ["3"]
