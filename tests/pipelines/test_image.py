"""Image pipeline over an offline-imported dataset: splits, batches, dtypes, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import UserError
from pipelines.image import ImageClassificationConfig, ImageClassificationPipeline


def make(_data_dir, **options) -> ImageClassificationPipeline:
    """`_data_dir`: the fixture that imported the tiny dataset (and set HARNESS_DATA_DIR)."""
    config = ImageClassificationConfig(dataset="fashion_mnist", download=False, **options)
    return ImageClassificationPipeline(config)


def test_describe_counts_carve_validation_from_train(data_dir):
    meta = make(data_dir, validation_split=0.25).describe()
    assert (meta.num_train, meta.num_validation, meta.num_test) == (450, 150, 200)
    assert meta.input_shape == (28, 28, 1) and meta.num_classes == 10
    assert meta.class_names[0] == "T-shirt/top"


def test_train_batches_are_float_pixels_with_fixed_size(data_dir):
    data = make(data_dir, batch_size=32, train_examples=400).train_data()
    images, labels = next(iter(data.train))
    assert images.shape == (32, 28, 28, 1) and images.dtype.name == "float32"
    assert float(images.numpy().max()) > 1.0  # raw [0, 255]: scaling is in the model
    assert data.steps_per_epoch == 360 // 32
    assert sum(int(x.shape[0]) for x, _ in data.validation) == 40


def test_validation_and_train_do_not_overlap(data_dir):
    pipeline = make(
        data_dir, batch_size=10, validation_split=0.5, train_examples=100, shuffle_buffer=1
    )
    data = pipeline.train_data()
    train = np.concatenate([x.numpy() for x, _ in data.train.take(5)])
    val = np.concatenate([x.numpy() for x, _ in data.validation])
    train_keys = {img.tobytes() for img in train}
    assert not train_keys & {img.tobytes() for img in val}


def test_replicas_scale_the_global_batch(data_dir):
    data = make(data_dir, batch_size=16).train_data(replicas=2)
    assert data.batch_size == 32 and next(iter(data.train))[0].shape[0] == 32


def test_deterministic_order_with_seed(data_dir):
    first = [
        y.numpy().tolist()
        for _, y in make(data_dir, deterministic=True, seed=3).train_data().train.take(2)
    ]
    second = [
        y.numpy().tolist()
        for _, y in make(data_dir, deterministic=True, seed=3).train_data().train.take(2)
    ]
    assert first == second


def test_test_split_is_separate(data_dir):
    sizes = sum(int(x.shape[0]) for x, _ in make(data_dir, test_examples=50).test_data(16))
    assert sizes == 50


def test_batch_larger_than_train_is_an_error(data_dir):
    with pytest.raises(UserError, match="fewer than data.batch_size"):
        make(data_dir, train_examples=40, batch_size=64).describe()


def test_missing_dataset_names_the_import_command(tmp_path):
    pipeline = make(tmp_path, data_dir=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="harness data import fashion_mnist"):
        pipeline.check_available()


def test_validation_by_count(data_dir):
    meta = make(data_dir, validation_examples=100).describe()
    assert (meta.num_train, meta.num_validation) == (500, 100)


def test_datasets_for_keras_go_without_the_autotune_thread(data_dir):
    # tf.data's autotuning thread can sleep out its period (up to 60 s) while `fit` destroys
    # the iterator: train, validation and refit data all go to Keras without it.
    pipeline = make(data_dir, batch_size=32, train_examples=400, deterministic=True)
    data = pipeline.train_data()
    refit = pipeline.train_and_validation_data()
    for dataset in (data.train, data.validation, refit.train):
        assert dataset.options().autotune.enabled is False
    assert data.train.options().deterministic is True  # the pipeline's own options kept
