"""Shared fixtures: seeds, a tiny Fashion-MNIST-shaped dataset imported offline, a local Ray."""

from __future__ import annotations

import gc
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

from harness import tf_env

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf_env.apply()  # the TensorFlow allocator users get (before this process runs an op)
REPO = Path(__file__).resolve().parents[1]
# Where real datasets were imported (CI: .ci/run), read before the fixtures point
# HARNESS_DATA_DIR at the tiny test data.
REAL_DATA_DIR = os.environ.get("HARNESS_DATA_DIR")


@pytest.fixture(autouse=True)
def seed():
    random.seed(0)
    np.random.seed(0)
    yield
    # A trial run in this process (a warm worker's `_release`) freezes what survives its
    # collection; the next test's garbage must not stay frozen with it.
    gc.unfreeze()


def tiny_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images whose class is a bright band at rows 2c..2c+3: learnable in 1 epoch."""
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c + 2 : 2 * c + 5, 4:24] = 230
    return images, labels


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    x_train, y_train = tiny_images(600, rng)
    x_test, y_test = tiny_images(200, rng)
    path = tmp_path_factory.mktemp("raw") / "fashion_mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def tiny_reviews(path: Path, n: int, rng: np.random.Generator) -> Path:
    """IMDB-shaped JSONL: positive reviews use 'great'/'loved', negative 'awful'/'boring'."""
    import gzip
    import json

    words = {0: ["awful", "boring", "bad"], 1: ["great", "loved", "superb"]}
    filler = ["the", "movie", "plot", "actor", "scene", "film", "story"]
    with gzip.open(path, "wt") as f:
        for split in ("train", "test"):
            for i in range(n):
                label = int(rng.integers(0, 2))
                text = " ".join(rng.choice(filler + words[label], size=12))
                row = {"split": split, "label": label, "id": i, "text": text + "<br />"}
                f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="session")
def data_dir(tiny_npz, tmp_path_factory) -> Path:
    """A data directory with tiny `fashion_mnist`, `cifar10` and `imdb_reviews` imported."""
    from pipelines import IMPORTERS
    from pipelines.offline import import_dataset

    target = tmp_path_factory.mktemp("tfds")
    import_dataset(IMPORTERS.get("fashion_mnist"), tiny_npz, target)
    rng = np.random.default_rng(2)
    raw = tmp_path_factory.mktemp("raw_more")
    cifar = {
        f"x_{s}": rng.integers(0, 255, (n, 32, 32, 3)).astype(np.uint8)
        for s, n in (("train", 300), ("test", 80))
    }
    cifar.update({f"y_{s}": rng.integers(0, 10, (n, 1)) for s, n in (("train", 300), ("test", 80))})
    np.savez(raw / "cifar10.npz", **cifar)
    import_dataset(IMPORTERS.get("cifar10"), raw / "cifar10.npz", target)
    reviews = tiny_reviews(raw / "imdb_reviews.jsonl.gz", 300, rng)
    import_dataset(IMPORTERS.get("imdb_reviews"), reviews, target)
    os.environ["HARNESS_DATA_DIR"] = str(target)
    return target


@pytest.fixture(scope="session")
def ray_local(data_dir):
    """A local Ray with 2 CPUs shared by the tuning tests; workers see the test data dir. Its 2
    GPUs are stand-ins (Ray only sets CUDA_VISIBLE_DEVICES): a job asks for them only in
    test_scale_out's GPUs-for-life test."""
    import ray

    ray.init(
        address="local",  # never a `ray start` cluster of another test (or of the user)
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=128 * 1024**2,
        runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def finished_job(ray_local, tmp_path_factory):
    """Two trials on Ray (one fails by design), exported with every format and refit: one run
    read by several modules' tests, each marked `xdist_group("finished_job")` so it runs once."""
    from rich.console import Console

    from harness.job import validate_job
    from harness.jobdir import JobDir
    from harness.tuning import tune

    tmp = tmp_path_factory.mktemp("finished")
    job = tiny_job(
        tmp,
        search_space={"name": "tests.helpers.hypermodels:ExplodingCNN", "fixed": PINNED_CNN},
        tuner={"algorithm": "grid", "max_trials": 2, "epochs": 2},
        export={"policy": "best", "formats": ["keras", "saved_model", "tflite"], "retrain": True},
    )
    spec = validate_job(job)
    outcome = tune(spec, Console(quiet=True))
    return JobDir(spec.job_dir()), outcome


# Every image_cnn hyperparameter pinned to a small net (tests that need a fixed model).
PINNED_CNN = {
    "family": "plain",
    "lr_schedule": "constant",
    "label_smoothing": 0.0,
    "conv_layers": 2,
    "kernel_size": 3,
    "batch_norm": False,
    "filters_0": 16,
    "filters_1": 16,
    "head": "flatten",
    "dense_units": 32,
    "dropout": 0.0,
    "optimizer": "adam",
    "learning_rate": 0.003,
}


def learning_rates(board) -> list[float]:
    """The learning rate TensorBoard recorded at the end of each epoch of one trial's run."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(board / "train"), size_guidance={"tensors": 0})
    events.Reload()
    return [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_learning_rate")]


def tiny_job(tmp_path: Path, **sections) -> dict:
    """A raw job mapping over the tiny data; `sections` replace or extend its parts."""
    job = {
        "name": "tiny",
        "output_dir": str(tmp_path / "job"),
        "data": {
            "pipeline": "image_classification",
            "dataset": "fashion_mnist",
            "download": False,
            "batch_size": 32,
            "validation_split": 0.2,
        },
        "search_space": {"name": "image_cnn", "fixed": {"filters_1": 32, "dense_units": 32}},
        "tuner": {"algorithm": "random", "max_trials": 2, "epochs": 1},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 2},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(job.get(key), dict):
            job[key] = {**job[key], **value}
        else:
            job[key] = value
    return job


# Whole modules that drive Ray clusters, `harness` subprocesses or shipped jobs end to end.
SLOW_MODULES = {"test_scale_out.py", "test_jobs.py", "test_quickstart.py", "test_worker_memory.py"}
# Search-space tests that build and train real models (a step, an epoch, a SavedModel round trip).
TRAINS = re.compile(r"train|fit|reload|saved_model|builds|discovers")


def pytest_collection_modifyitems(config, items):
    """Marks `slow` every test that starts Ray (it uses `ray_local`), lives in a module of
    end-to-end runs or trains a search space's models, so `pytest -m "not slow"` is the fast
    loop (the FakeExecutor's tests cover the search loop there).

    Then runs the longest first: `--dist loadgroup` hands tests out a few at a time in this
    order, so a 1-2 minute end-to-end test starts early instead of keeping one process busy at
    the end while the other has nothing left (a tail of minutes on 2 cores)."""
    for item in items:
        if (
            "ray_local" in getattr(item, "fixturenames", ())
            or item.path.name in SLOW_MODULES
            or (item.path.parent.name == "search_spaces" and TRAINS.search(item.name))
        ):
            item.add_marker(pytest.mark.slow)

    def expected_cost(item) -> int:
        if item.path.name in SLOW_MODULES:
            return 0
        if "ray_local" in getattr(item, "fixturenames", ()):
            return 1
        return 2 if item.get_closest_marker("slow") else 3

    items.sort(key=expected_cost)  # stable: modules keep their order within each class


def pytest_configure(config):
    """`--dist loadgroup` keeps each `xdist_group` in one process only with pytest < 9.2: with
    9.2, pytest-xdist 3.8 silently distributes grouped tests like any other
    (pytest-dev/pytest-xdist#1386), and the jobs they share then run once per process."""
    if config.getoption("dist", "no") == "loadgroup" and pytest.version_tuple >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} breaks --dist loadgroup "
            "(pytest-dev/pytest-xdist#1386): install pytest<9.2, as pyproject.toml's dev extra says"
        )


def pytest_collection_finish(session):
    """The same, checked where it happens (a worker's collection), for a version the check
    above lets through: a grouped test whose id lacks pytest-xdist's group suffix."""
    if not getattr(session.config.option, "loadgroup", False):
        return  # not a loadgroup worker (a single process, or another --dist)
    lost = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if lost:  # a worker's exit reaches the terminal as pytest-xdist's INTERNALERROR, exit 3
        pytest.exit(f"--dist loadgroup lost the group of {lost[0]}", returncode=3)
