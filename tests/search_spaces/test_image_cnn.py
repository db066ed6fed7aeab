"""The image CNN space: default point = the tutorial CNN; every branch (the plain stack, VGG-style
blocks, the training levers) builds and trains."""

from __future__ import annotations

import keras_tuner as kt
import numpy as np
import pytest

from pipelines.base import DataMeta
from search_spaces.image_cnn import ImageCNN
from tests.conftest import tiny_images

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
    model.optimizer.iterations.assign(10_000)  # constant: no schedule at the default point
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)
    assert model.loss == "sparse_categorical_crossentropy"  # no label smoothing


@pytest.mark.parametrize(
    "pinned",
    [
        {"conv_layers": 2},
        {"conv_layers": 5, "kernel_size": 5},
        {"batch_norm": True},
        {"head": "global_avg", "dense_units": 256},
        {"optimizer": "sgd", "sgd_learning_rate": 0.1, "lr_schedule": "one_cycle"},
        {"optimizer": "rmsprop", "dropout": 0.0},
        {"optimizer": "adamw", "lr_schedule": "cosine", "label_smoothing": 0.1},
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
    assert type(model.optimizer).__name__.lower() == pinned.get("optimizer", "adam")
    if "label_smoothing" in pinned:
        assert model.loss.label_smoothing == pinned["label_smoothing"]
    peak = pinned.get("sgd_learning_rate", 1e-3)
    rate = float(model.optimizer.learning_rate)  # after 1 step of the default plan's 30
    if pinned.get("lr_schedule", "constant") == "constant":
        assert np.isclose(rate, peak)
    else:
        assert 0 < rate < 0.6 * peak  # still warming up


def train_one_step(model, shape=(28, 28, 1)) -> dict:
    x = np.random.randint(0, 255, size=(8, *shape)).astype("float32")
    y = np.random.randint(0, 10, size=(8,))
    return model.train_on_batch(x, y, return_dict=True)


@pytest.mark.parametrize(
    "pinned, filters, head",
    [
        ({"family": "vgg"}, [32, 32, 64, 64, 128, 128], "Flatten"),
        (
            {"family": "vgg", "vgg_blocks": 2, "vgg_filters": 64, "vgg_dropout": 0.0},
            [64, 64, 128, 128],
            "Flatten",
        ),
        (
            {"family": "vgg", "head": "global_avg", "vgg_filters": 48},
            [48, 48, 96, 96, 192, 192],
            "GlobalAveragePooling2D",
        ),
    ],
    ids=["default_vgg", "2_blocks_64", "global_avg_48"],
)
def test_vgg_blocks_build_and_train_one_step(pinned, filters, head):
    hp = kt.HyperParameters()
    for name, value in pinned.items():
        hp.Fixed(name, value)
    model = ImageCNN(META).build(hp)
    logs = train_one_step(model)
    assert np.isfinite(logs["loss"]) and "accuracy" in logs
    layers = model.layers
    convs = [layer for layer in layers if type(layer).__name__ == "Conv2D"]
    assert [conv.filters for conv in convs] == filters
    assert all(conv.padding == "same" and conv.kernel_size == (3, 3) for conv in convs)
    types = [type(layer).__name__ for layer in layers]
    assert types.count("BatchNormalization") == len(convs)  # every conv is normalised
    assert types.count("MaxPooling2D") == len(convs) // 2  # one pool per block of two
    rate = pinned.get("vgg_dropout", 0.2)
    block_dropouts = [layer.rate for layer in layers if type(layer).__name__ == "Dropout"][:-1]
    assert block_dropouts == ([rate] * (len(convs) // 2) if rate else [])
    assert head in types and model.output.shape[-1] == 10


def test_vgg_fits_cifar_sized_colour_images():
    meta = DataMeta("image_classification", (32, 32, 3), 10, META.class_names, 100, 10, 10, "t")
    hp = kt.HyperParameters()
    hp.Fixed("family", "vgg")
    model = ImageCNN(meta).build(hp)
    pooled = [layer for layer in model.layers if type(layer).__name__ == "MaxPooling2D"]
    assert pooled[-1].output.shape[1:] == (4, 4, 128)
    assert np.isfinite(train_one_step(model, (32, 32, 3))["loss"])


def test_deeper_nets_keep_a_valid_feature_map_on_small_images():
    hp = kt.HyperParameters()
    hp.Fixed("conv_layers", 5)
    model = ImageCNN(META).build(hp)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    # 'valid' while the map is at least kernel + 2 wide, then 'same'; no pooling below 4.
    assert [layer.output.shape[1] for layer in convs] == [26, 11, 3, 3, 3]


@pytest.mark.parametrize("family", ["plain", "vgg"])
def test_a_signal_laid_out_as_a_thin_image_builds_and_trains(family):
    """A 1-D signal as an (L, 1, 1) "image": thin axes are neither cut by 'valid' convolutions
    nor pooled to nothing (this used to crash with a traceback)."""
    meta = DataMeta("image_classification", (40, 1, 1), 10, META.class_names, 100, 10, 10, "t")
    hp = kt.HyperParameters()
    hp.Fixed("family", family)
    model = ImageCNN(meta).build(hp)
    assert all(
        layer.output.shape[2] == 1 for layer in model.layers[1:] if len(layer.output.shape) == 4
    )
    assert np.isfinite(train_one_step(model, (40, 1, 1))["loss"])


def test_a_short_fit_with_batch_norm_validates_as_well_as_it_trains():
    """A trial of few steps (small data, short pruned trials) is validated with the batch norm
    layers' moving statistics: they must have settled by then. At Keras's default momentum
    (0.99) they had not, and such trials scored near chance on validation while training well."""
    import keras

    images, labels = tiny_images(1024, np.random.default_rng(0))
    images = images[..., None].astype("float32")
    keras.utils.set_random_seed(0)
    hp = kt.HyperParameters()
    for name, value in {"family": "vgg", "vgg_blocks": 2, "vgg_filters": 32}.items():
        hp.Fixed(name, value)
    model = ImageCNN(META).build(hp)
    model.fit(images, labels, batch_size=32, epochs=1, verbose=0)  # 32 steps
    accuracy = model.evaluate(images, labels, verbose=0, return_dict=True)["accuracy"]
    assert accuracy > 0.9
