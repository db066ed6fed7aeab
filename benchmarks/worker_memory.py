"""RSS of one warm worker process across many trials: does it stay flat?

Usage:
    python benchmarks/worker_memory.py [--trials 40] [--warmup 5] [--space image_cnn]
        [--train-examples 2000] [--epochs 1] [--data-dir DIR] [--json out.json]

Runs `harness.trial_runner.run_trial(request)` `--trials` times in this one process, as a warm
worker (the Ray actor of one trial slot) does, and records the process's RSS after each trial.
The slope (MB per trial, least squares over the trials after `--warmup`) is the figure the
warm-worker target is about (<= 1 MB per trial). Without `--data-dir`, a synthetic
Fashion-MNIST-shaped dataset (`--train-examples` images) is imported into a temporary folder.

`--space image_cnn` is the space's default point (the TensorFlow tutorial CNN); `tiny_cnn` is
a 2-conv, 16-filter net; `mlp` a one-hidden-layer perceptron (defined below).
`--trim` calls glibc's `malloc_trim(0)` after each trial, `--gc` `gc.collect()`: diagnostics
that tell freed-but-retained native memory and Python garbage apart from real growth; the
allocator can be swapped from the environment (`MALLOC_ARENA_MAX=2`, `LD_PRELOAD=` jemalloc),
which the JSON records.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from harness import tf_env  # noqa: E402

tf_env.apply()  # TensorFlow's allocator as the harness's processes run it

import keras_tuner as kt  # noqa: E402

from search_spaces.base import SearchSpace, make_optimizer  # noqa: E402

TINY_CNN = {
    "conv_layers": 2,
    "kernel_size": 3,
    "batch_norm": False,
    "filters_0": 16,
    "filters_1": 16,
    "head": "flatten",
    "dense_units": 32,
    "dropout": 0.0,
}


class MLP(SearchSpace):
    """Flatten -> Dense(units) -> Dense(classes): the smallest model the image pipeline feeds."""

    tasks = ("image_classification",)

    def build(self, hp: kt.HyperParameters):
        import keras
        from keras import layers

        inputs = keras.Input(shape=self.meta.input_shape, name="image")
        x = layers.Flatten()(layers.Rescaling(1.0 / 255)(inputs))
        x = layers.Dense(hp.Choice("units", [16, 32, 64], default=32), activation="relu")(x)
        outputs = layers.Dense(self.meta.num_classes, activation="softmax")(x)
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=make_optimizer(hp),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


SPACES = {
    "image_cnn": ("image_cnn", {}),
    "tiny_cnn": ("image_cnn", TINY_CNN),
    "mlp": ("benchmarks.worker_memory:MLP", {}),
}


def synthetic_data_dir(root: Path, n_train: int, n_test: int = 500) -> Path:
    """Imports Fashion-MNIST-shaped images (class c: a bright band at rows 2c..2c+3)."""
    from pipelines import IMPORTERS
    from pipelines.offline import import_dataset

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 2 : 2 * c + 5, 4:24] = 230
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images, labels
    np.savez(root / "fashion_mnist.npz", **arrays)
    target = root / "tfds"
    import_dataset(IMPORTERS.get("fashion_mnist"), root / "fashion_mnist.npz", target)
    return target


def make_job(out: Path, space: str, examples: int, epochs: int) -> dict:
    name, fixed = SPACES[space]
    return {
        "name": "worker-memory",
        "output_dir": str(out),
        "data": {
            "pipeline": "image_classification",
            "dataset": "fashion_mnist",
            "download": False,
            "train_examples": examples,
            "batch_size": 64,
        },
        "search_space": {"name": name, "fixed": fixed},
        "tuner": {"algorithm": "random", "max_trials": 1000, "epochs": epochs},
        "resources": {"cpus_per_trial": 1},
        "export": {"policy": "none"},
    }


def default_point(spec) -> kt.HyperParameters:
    """The space's default point with the job's `fixed` values, as a driver would send it."""
    import keras

    from harness.space import make_hypermodel
    from pipelines import PIPELINES

    pipeline = PIPELINES.get(spec.data.pipeline)(spec.data)
    hp = kt.HyperParameters()
    pipeline.declare_hyperparameters(hp)
    for name, value in spec.search_space.fixed.items():
        hp.Fixed(name, value)
    hypermodel = make_hypermodel(spec, pipeline.describe(hp))
    hypermodel.declare_hyperparameters(hp)
    hypermodel.build(hp)
    keras.backend.clear_session()
    point = kt.HyperParameters()  # the active values only: no conditional scopes to ship
    for name, value in hp.values.items():
        point.Fixed(name, value)
    return point


def slope(ys: list[float]) -> float:
    """Least-squares MB per trial."""
    if len(ys) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(ys)), ys, 1)[0])


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run(args) -> dict:
    from harness.job import validate_job
    from harness.strategy import configure_devices
    from harness.trial_runner import run_trial

    tmp = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    spec = validate_job(make_job(tmp / "job", args.space, args.train_examples, args.epochs))
    configure_devices(spec.resources)  # before anything starts TensorFlow, as in a worker
    data_dir = args.data_dir or str(synthetic_data_dir(tmp, args.train_examples))
    os.environ["HARNESS_DATA_DIR"] = data_dir
    request_job = spec.model_dump(mode="json")
    hyperparameters = default_point(spec).get_config()
    libc = ctypes.CDLL("libc.so.6") if args.trim else None
    start_rss = rss_mb()
    rows = []
    for i in range(args.trials):
        started = time.perf_counter()
        result = run_trial(
            {
                "job": request_job,
                "job_dir": str(tmp / "job"),
                "trial_id": f"{i:04d}",
                "hyperparameters": hyperparameters,
                "submitted_at": time.time(),
            }
        )
        if args.gc:
            gc.collect()
        if libc is not None:
            libc.malloc_trim(0)
        row = {
            "trial": i,
            "rss_mb": round(rss_mb(), 2),
            "rss_in_trial_mb": round(result["worker_rss_mb"], 2),
            "seconds": round(time.perf_counter() - started, 2),
            "build_s": round(result["timings"]["build_s"], 3),
            "val_accuracy": round(result["epochs"][-1]["metrics"].get("val_accuracy", 0), 4),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    steady = [r["rss_mb"] for r in rows[args.warmup :]]
    return {
        "space": args.space,
        "trials": args.trials,
        "warmup": args.warmup,
        "train_examples": args.train_examples,
        "epochs": args.epochs,
        "trim": args.trim,
        "gc": args.gc,
        "env": {k: os.environ[k] for k in ("MALLOC_ARENA_MAX", "LD_PRELOAD") if k in os.environ},
        "rss_before_mb": round(start_rss, 2),
        "rss_first_mb": rows[0]["rss_mb"],
        "rss_last_mb": rows[-1]["rss_mb"],
        "slope_mb_per_trial": round(slope(steady), 3),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--space", choices=sorted(SPACES), default="image_cnn")
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data-dir", help="a data dir with fashion_mnist imported")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each trial")
    parser.add_argument("--gc", action="store_true", help="gc.collect() after each trial")
    parser.add_argument("--json", help="write the summary and per-trial rows here")
    args = parser.parse_args()
    summary = run(args)
    print(
        f"{args.space}: RSS {summary['rss_first_mb']:.1f} MB after trial 1, "
        f"{summary['rss_last_mb']:.1f} MB after trial {args.trials}; "
        f"slope {summary['slope_mb_per_trial']:.2f} MB/trial after {args.warmup} warm-up trials"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
