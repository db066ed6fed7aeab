"""The image CNN space: default point = the tutorial CNN; every branch builds and trains."""

from __future__ import annotations

import keras_tuner as kt
import numpy as np
import pytest

from pipelines.base import DataMeta
from search_spaces.image_cnn import ImageCNN

META = DataMeta(
    "image_classification", (28, 28, 1), 10, [str(i) for i in range(10)], 100, 10, 10, "test"
)


def summary(model) -> list[tuple[str, tuple]]:
    return [(type(layer).__name__, tuple(layer.output.shape[1:])) for layer in model.layers]


def test_default_point_is_the_tutorial_cnn():
    model = ImageCNN(META).build(kt.HyperParameters())
    assert summary(model) == [
        ("InputLayer", (28, 28, 1)),
        ("Rescaling", (28, 28, 1)),
        ("Conv2D", (26, 26, 32)),
        ("MaxPooling2D", (13, 13, 32)),
        ("Conv2D", (11, 11, 64)),
        ("MaxPooling2D", (5, 5, 64)),
        ("Conv2D", (3, 3, 64)),
        ("Flatten", (576,)),
        ("Dense", (64,)),
        ("Dropout", (64,)),
        ("Dense", (10,)),
    ]
    assert model.count_params() == 93_322  # the tutorial's parameter count
    assert model.layers[-2].rate == 0.5
    assert type(model.optimizer).__name__ == "Adam"
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)


@pytest.mark.parametrize(
    "pinned",
    [
        {"conv_layers": 2},
        {"conv_layers": 5, "kernel_size": 5},
        {"batch_norm": True},
        {"head": "global_avg", "dense_units": 256},
        {"optimizer": "sgd", "learning_rate": 0.01},
        {"optimizer": "rmsprop", "dropout": 0.0},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_branches_build_and_train_one_step(pinned):
    hp = kt.HyperParameters()
    for name, value in pinned.items():
        hp.Fixed(name, value)
    model = ImageCNN(META).build(hp)
    x = np.random.randint(0, 255, size=(8, 28, 28, 1)).astype("float32")
    y = np.random.randint(0, 10, size=(8,))
    loss = model.train_on_batch(x, y)
    assert np.isfinite(np.asarray(loss)).all()
    layer_types = [type(layer).__name__ for layer in model.layers]
    assert layer_types.count("Conv2D") == pinned.get("conv_layers", 3)
    if pinned.get("batch_norm"):
        assert "BatchNormalization" in layer_types
    if pinned.get("head") == "global_avg":
        assert "GlobalAveragePooling2D" in layer_types and "Flatten" not in layer_types


def test_deeper_nets_keep_a_valid_feature_map_on_small_images():
    hp = kt.HyperParameters()
    hp.Fixed("conv_layers", 5)
    model = ImageCNN(META).build(hp)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert all(layer.output.shape[1] >= 1 for layer in convs)
