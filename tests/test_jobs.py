"""Every shipped job's smoke variant runs end to end on tiny data (the big_vision `runlocal`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from harness.cli import app
from harness.job_file import load_job
from harness.jobdir import JobDir
from harness.tuning import tune
from tests.conftest import REPO

JOBS = [
    "char_lm",
    "cifar10_cnn",
    "fashion_mnist_cnn",
    "fashion_mnist_transfer",
    "gan_fashion_mnist",
    "imdb_rnn",
    "seq2seq_addition",
    "timeseries_lstm",
    "signals_cnn",
]


def tensorflow_only(script: str, *args) -> str:
    """Runs `script` in a fresh process with only TensorFlow and NumPy (the script asserts
    that the harness is not imported); returns its last line of output."""
    out = subprocess.run(
        [sys.executable, "-c", script + "assert 'harness' not in sys.modules\n", *map(str, args)],
        capture_output=True,
        text=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def harness_predict(*args):
    """`harness predict ARGS` in this process (its own process is tested in test_observe: here
    a second TensorFlow import would cost more than the prediction); asserts it succeeded."""
    result = CliRunner().invoke(app, ["predict", *map(str, args)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("name", JOBS)
def test_smoke_variant_runs(ray_local, tmp_path, name):
    # Every space that can be refit is (but transfer's, below), so export.retrain runs for each.
    overrides = [f"output_dir={tmp_path / 'job'}", "data.download=false", "export.retrain=true"]
    if name == "seq2seq_addition":  # generated pairs: nothing to download
        overrides.remove("data.download=false")
    if name == "fashion_mnist_transfer":
        # Its refit is the same `fit` its trial ran (the phases are tested in test_transfer),
        # and tracing MobileNetV2's train step again costs 20 s.
        overrides.remove("export.retrain=true")
    if name == "cifar10_cnn":  # image_cnn's refit runs in the fashion_mnist_cnn job
        overrides.remove("export.retrain=true")
    # Jobs on files: the demo data their comments tell users to generate.
    demos = {
        "signals_cnn": ("make_demo_signals.py", "signals.npz", ["--train", "500"], "data.arrays"),
        "timeseries_lstm": ("make_demo_series.py", "demo.csv", ["--hours", "600"], "data.path"),
    }
    if name in demos:
        script, filename, args, key = demos[name]
        demo = tmp_path / filename
        command = [sys.executable, f"benchmarks/{script}", str(demo), *args]
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        overrides = [f"output_dir={tmp_path / 'job'}", f"{key}={demo}"]
    # One trial shows a job runs end to end (the loop has tests of its own); the Hyperband
    # job keeps its smoke's two (its rounds are what differs from the other jobs).
    if name != "cifar10_cnn":
        overrides.append("tuner.max_trials=1")
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
    if name == "timeseries_lstm":
        check_forecaster_export(spec, outcome.exported[0], demo, tmp_path)
    if name == "char_lm":
        check_generator_export(outcome.exported[0])
    if name == "signals_cnn":
        check_sequence_export(outcome.exported[0], demo, tmp_path)
    if name == "gan_fashion_mnist":  # the generator ships: the data's labels do not describe it
        version = Path(outcome.exported[0]["path"])
        assert not (version / "labels.txt").exists()
        assert "probabilities" not in (version / "README.md").read_text()
    if name == "seq2seq_addition":
        check_decoder_export(outcome.exported[0])
        result = harness_predict(outcome.exported[0]["path"], "12+34")
        answer = result.stdout.strip().split(" -> ")
        assert answer[0] == "12+34" and set(answer[1] if len(answer) > 1 else "") <= set(
            "0123456789+"
        )


def check_sequence_export(manifest, arrays, tmp_path):
    """The SavedModel takes raw float sequences: in a process importing only TensorFlow and
    NumPy, its accuracy on the scored test examples equals the manifest's; `harness predict`
    reads a .npy of sequences and ranks the classes."""
    import numpy as np

    n = manifest["data"]["num_test"]
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "with np.load(sys.argv[2]) as f:\n"
        "    x, y = f['x_test'][: int(sys.argv[3])], f['y_test'][: int(sys.argv[3])]\n"
        "p = serve(inputs=tf.constant(x[..., None]))['probabilities'].numpy()\n"
        "print(float((p.argmax(1) == y).mean()))\n"
    )
    accuracy = float(tensorflow_only(script, manifest["path"], arrays, n))
    assert abs(accuracy - manifest["test_metrics"]["accuracy"]) <= 0.001
    three = tmp_path / "three.npy"
    with np.load(arrays) as f:
        np.save(three, f["x_test"][:3])
    result = harness_predict(manifest["path"], three, "--top", "2")
    lines = result.stdout.strip().splitlines()
    names = manifest["data"]["class_names"]
    assert [line.split(": ")[0] for line in lines] == [f"{three}:{i}" for i in (1, 2, 3)]
    for line in lines:  # two classes each, likeliest first
        ranked = line.split(": ", 1)[1].split(", ")
        assert len(ranked) == 2 and all(r.split(" (")[0] in names for r in ranked)
        assert float(ranked[0].split("(")[1][:-1]) >= float(ranked[1].split("(")[1][:-1])


def check_generator_export(manifest):
    """The LM's SavedModel writes text from a raw prompt in a process with only TensorFlow;
    `harness predict` continues a prompt; the unigram baseline is in the manifest and card."""
    script = (
        "import sys, tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = serve(prompt=tf.constant(['The film', 'A']), length=tf.constant(25),\n"
        "            temperature=tf.constant(0.5))['generated'].numpy()\n"
        "print([len(t.decode()) for t in out])\n"
    )
    assert tensorflow_only(script, manifest["path"]) == "[25, 25]"
    result = harness_predict(manifest["path"], "The film", "--length", "30")
    assert result.stdout.startswith("The film") and len(result.stdout.rstrip("\n")) >= 38
    # Bits per character are read against the unigram model of the same test text.
    unigram = manifest["test_baselines"]["unigram"]["bits_per_char"]
    assert 2.0 < unigram < 7.0  # English characters: ~4.4 bits each
    card = (Path(manifest["path"]) / "README.md").read_text()
    assert f"Baseline on the same examples, unigram: bits_per_char {unigram:.4f}." in card


def check_decoder_export(manifest):
    """The seq2seq SavedModel decodes raw strings, vocabulary inside, in a process with only
    TensorFlow: one answer per input, each made of the output vocabulary's characters."""
    script = (
        "import sys, tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = serve(text=tf.constant(['535+61', '12+34', '7+0']))['decoded'].numpy()\n"
        "print('|'.join(t.decode() for t in out))\n"
    )
    answers = tensorflow_only(script, manifest["path"]).split("|")
    assert len(answers) == 3 and all(set(a) <= set("0123456789+") for a in answers), answers


def check_forecaster_export(spec, manifest, csv_path, tmp_path):
    """The SavedModel takes raw values and returns raw forecasts: equal to the Keras model
    on values normalised by the training range's statistics, then denormalised; and
    `harness predict` reads a CSV of recent rows."""
    import json

    import keras
    import numpy as np
    import tensorflow as tf

    from pipelines import PIPELINES
    from pipelines.timeseries import split_bounds

    version = manifest["path"]
    meta = PIPELINES.get(spec.data.pipeline)(spec.data).describe()
    mean, std = np.array(meta.extra["mean"]), np.array(meta.extra["std"])
    targets = meta.extra["target_indices"]
    request = json.loads((Path(version) / "example_request.json").read_text())
    raw = np.asarray(request["instances"], np.float32)
    assert raw.shape[1:] == meta.input_shape
    served = tf.saved_model.load(version).signatures["serving_default"](values=tf.constant(raw))
    model = keras.models.load_model(f"{version}/model.keras", compile=False)
    expected = model.predict((raw - mean) / std, verbose=0) * std[targets] + mean[targets]
    np.testing.assert_allclose(served["forecast"].numpy(), expected, rtol=1e-4, atol=1e-4)
    # The raw-unit test MAE in the manifest, recomputed from the CSV itself in a process that
    # imports only TensorFlow and NumPy; with one target it is the normalised MAE times its std.
    rows = len(np.genfromtxt(csv_path, delimiter=",", skip_header=1))
    start = split_bounds(rows, spec.data.validation_fraction, spec.data.test_fraction)["test"][0]
    script = (
        "import sys, json, numpy as np, tensorflow as tf\n"
        "version, path, start, stride = sys.argv[1], sys.argv[2], int(sys.argv[3]), "
        "int(sys.argv[4])\n"
        "data = json.load(open(version + '/manifest.json'))['data']\n"
        "table = np.genfromtxt(path, delimiter=',', names=True)\n"
        "raw = np.stack([table[c] for c in data['columns']], 1).astype(np.float32)\n"
        "w, h = data['window'], data['horizon']\n"
        "firsts = range(start, len(raw) - w - h + 1, stride)\n"
        "x = np.stack([raw[f : f + w] for f in firsts])\n"
        "cols = [data['columns'].index(t) for t in data['targets']]\n"
        "y = np.stack([raw[f + w : f + w + h][:, cols] for f in firsts])\n"
        "serve = tf.saved_model.load(version).signatures['serving_default']\n"
        "forecast = serve(values=tf.constant(x))['forecast'].numpy()\n"
        "print(len(x), np.abs(forecast - y).mean())\n"
    )
    windows, mae = tensorflow_only(script, version, csv_path, start, spec.data.stride).split()
    assert int(windows) == manifest["data"]["num_test"]
    raw_mae = manifest["served_test_metrics"]["mae"]
    assert float(mae) == pytest.approx(raw_mae, rel=1e-3)
    assert raw_mae == pytest.approx(manifest["test_metrics"]["mae"] * std[targets[0]], rel=1e-3)
    card = (Path(version) / "README.md").read_text()
    assert "in the units it returns (the metrics above are the model's own" in card
    assert f"mae {raw_mae:.4f}" in card
    result = harness_predict(version, csv_path)
    assert result.stdout.startswith(f"{csv_path}: next ")
    from harness.errors import UserError
    from harness.predict import predict

    with pytest.raises(UserError, match="is a forecaster; --top is for classifiers"):
        predict(Path(version), [str(csv_path)], top=2)
    shown = result.stdout.split("next ")[1].split(";")[0].split()
    assert shown[0] == meta.extra["targets"][0] and len(shown) - 1 == meta.extra["horizon"]
