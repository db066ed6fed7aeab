"""The transfer-learning space: every backbone builds, preprocessing matches Keras's, weights come
from local files only, and `fit` trains the head before fine-tuning the backbone's top layers."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from harness.errors import UserError
from pipelines.base import DataMeta
from search_spaces.transfer import BACKBONES, IMAGENET_STDDEV_RGB, TransferLearning

RGB = DataMeta("image_classification", (32, 32, 3), 10, [str(i) for i in range(10)], 8, 2, 2, "t")
GREY = DataMeta("image_classification", (28, 28, 1), 10, [str(i) for i in range(10)], 8, 2, 2, "t")
SMALL = {"backbone": "MobileNetV2", "alpha": 0.35}  # the cheapest backbone to train in tests


def smallest(name: str) -> dict:
    return {"alpha": 0.35} if name == "MobileNetV2" else {}


def build(
    meta: DataMeta, pinned: dict | None = None, **options
) -> tuple[keras.Model, kt.HyperParameters]:
    hp = kt.HyperParameters()
    for name, value in (pinned or {}).items():
        hp.Fixed(name, value)
    return TransferLearning(meta, **options).build(hp), hp


def raw_images(n: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.uniform(0, 255, size=(n, *shape)).astype("float32")


def trainable_backbone_layers(model: keras.Model) -> set[str]:
    backbone = model.get_layer("backbone")
    return {layer.name for layer in backbone.layers if layer.trainable_weights}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A MobileNetV2 (alpha 0.35) no-top weights file, as a user would copy one in."""
    model, _ = build(RGB, **SMALL)
    path = tmp_path_factory.mktemp("weights") / "w.weights.h5"
    model.get_layer("backbone").save_weights(str(path))
    return path, [w.copy() for w in model.get_layer("backbone").get_weights()]


@pytest.mark.parametrize("name", list(BACKBONES))
@pytest.mark.parametrize("meta", [RGB, GREY], ids=["rgb32", "grey28"])
def test_every_backbone_builds_from_scratch_on_small_images(name, meta):
    model, hp = build(meta, backbone=name, image_size=32, **smallest(name))
    backbone = model.get_layer("backbone")
    assert model.input.shape[1:] == meta.input_shape  # raw images of the data's shape go in
    assert tuple(backbone.input.shape[1:]) == (32, 32, 3)
    assert tuple(model.output.shape[1:]) == (10,)
    # From scratch: the whole backbone trains and there is nothing to fine-tune.
    assert backbone.trainable and "fine_tune_layers" not in hp.values


def test_grey_images_become_rgb_scaled_for_mobilenet():
    model, _ = build(GREY, image_size=32, **SMALL)
    probe = keras.Model(model.input, model.get_layer("preprocess").output)
    x = np.stack([np.zeros((28, 28, 1)), np.full((28, 28, 1), 255.0)]).astype("float32")
    out = probe.predict(x, verbose=0)
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(out[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(out[1], 1.0, atol=1e-6)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_preprocessing_layers_match_keras_preprocess_input(name):
    spec = BACKBONES[name]
    inputs = keras.Input((4, 4, 3))
    x = inputs
    for layer in spec.preprocess():
        x = layer(x)
    images = raw_images(2, (4, 4, 3))
    ours = keras.Model(inputs, x).predict(images, verbose=0)
    np.testing.assert_allclose(ours, spec.preprocess_input(images.copy()), rtol=1e-5, atol=1e-4)


def test_caffe_preprocessing_saves_and_loads_with_plain_keras(tmp_path):
    inputs = keras.Input((4, 4, 3))
    x = inputs
    for layer in BACKBONES["ResNet50"].preprocess():
        x = layer(x)
    model = keras.Model(inputs, x)
    model.save(tmp_path / "caffe.keras")
    reloaded = keras.models.load_model(tmp_path / "caffe.keras")
    images = raw_images(2, (4, 4, 3))
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0)
    )
    assert not reloaded.trainable_weights  # fixed maths, never trained


@pytest.mark.parametrize(
    "meta, options, message",
    [
        (
            RGB,
            {"backbone": "ResNet18"},
            "search_space.options.backbone: unknown backbone 'ResNet18'; "
            "known: MobileNetV2, EfficientNetB0, ResNet50, VGG16",
        ),
        (
            GREY,
            {"backbone": "EfficientNetB0"},
            "backbone EfficientNetB0 needs at least 32x32 inputs but the images are 28x28; "
            "set search_space.options.image_size (e.g. 224)",
        ),
        (
            GREY,
            {"image_size": 16},
            "search_space.options.image_size 16 is below backbone MobileNetV2's minimum of 32",
        ),
        (
            RGB,
            {"backbone": "ResNet50", "alpha": 0.35},
            "search_space.options.alpha 0.35 applies only to MobileNetV2, not to backbone ResNet50",
        ),
        (
            RGB,
            {"weights": "mobilenet.npz"},
            "search_space.options.weights 'mobilenet.npz' must be a .h5 or .weights.h5 file of "
            "backbone MobileNetV2 without its top",
        ),
        (
            DataMeta("image_classification", (32, 32, 4), 2, ["a", "b"], 8, 2, 2, "t"),
            {},
            "TransferLearning needs images of shape (height, width, 1 or 3 channels); "
            "the data has shape (32, 32, 4)",
        ),
    ],
    ids=["unknown", "too-small", "image-size", "alpha", "suffix", "channels"],
)
def test_bad_options_are_one_line_user_errors(meta, options, message):
    with pytest.raises(UserError) as info:
        TransferLearning(meta, **options)
    assert str(info.value) == message


def test_missing_weights_file_says_nothing_can_be_downloaded(tmp_path):
    missing = tmp_path / "mobilenet_v2_no_top.h5"
    with pytest.raises(UserError) as info:
        TransferLearning(RGB, weights=str(missing))
    message = str(info.value)
    assert "\n" not in message
    assert f"missing file {missing}; pretrained weights cannot be downloaded here" in message


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, before it raises
def test_weights_file_of_another_architecture_is_a_user_error(weights_file):
    path, _ = weights_file
    with pytest.raises(UserError) as info:
        build(RGB, backbone="MobileNetV2", weights=str(path))  # alpha 1.0, file is 0.35
    message = str(info.value)
    assert f"{path} does not fit backbone MobileNetV2 (alpha 1.0) without its top: " in message
    assert "value.shape=(3, 3, 3, 16)" in message and "\n" not in message


def test_weights_file_loads_into_a_frozen_backbone(weights_file):
    path, saved = weights_file
    model, hp = build(RGB, weights=str(path), **SMALL)
    backbone = model.get_layer("backbone")
    for loaded, expected in zip(backbone.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(loaded, expected)
    fresh, _ = build(RGB, **SMALL)
    assert not np.array_equal(fresh.get_layer("backbone").get_weights()[0], saved[0])
    assert not backbone.trainable
    assert [w.path for w in model.trainable_weights] == ["probs/kernel", "probs/bias"]
    assert hp.values["fine_tune_layers"] == 0  # default: feature extraction only


def test_efficientnet_imagenet_file_normalizes_by_the_standard_deviation(tmp_path):
    # Keras's EfficientNet files hold the ImageNet standard deviations as "variance".
    source = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    mean = np.array([0.485, 0.456, 0.406], dtype="float32")
    norm = next(layer for layer in source.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign(mean)
    norm.adapt_variance.assign(np.array(IMAGENET_STDDEV_RGB, dtype="float32"))
    source.save_weights(str(tmp_path / "effnet.weights.h5"))

    model, _ = build(RGB, backbone="EfficientNetB0", weights=str(tmp_path / "effnet.weights.h5"))
    backbone = model.get_layer("backbone")
    norm = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Normalization))
    images = raw_images(2, (32, 32, 3))
    out = keras.Model(backbone.input, norm.output).predict(images, verbose=0)
    expected = (images / 255 - mean) / np.array(IMAGENET_STDDEV_RGB)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


class PhaseRecorder(keras.callbacks.Callback):
    """What each epoch trained: trainable backbone layers, trainable weights, learning rate."""

    def __init__(self):
        super().__init__()
        self.epochs: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(
            {
                "backbone": trainable_backbone_layers(self.model),
                "trainable_weights": len(self.model.trainable_weights),
                "learning_rate": float(
                    keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
                ),
            }
        )


def test_fit_trains_the_head_then_fine_tunes_the_top_layers(weights_file):
    path, _ = weights_file
    space = TransferLearning(RGB, weights=str(path), **SMALL)
    hp = kt.HyperParameters()
    hp.Fixed("fine_tune_layers", 10)
    model = space.build(hp)
    backbone = model.get_layer("backbone")
    top = backbone.layers[-10:]
    expected = {
        layer.name
        for layer in top
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    }
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in backbone.layers}
    recorder = PhaseRecorder()

    history = space.fit(
        hp,
        model,
        raw_images(8, (32, 32, 3)),
        np.arange(8) % 10,
        batch_size=2,
        epochs=2,
        callbacks=[recorder],
        verbose=0,
    )

    head_only, tuned = recorder.epochs
    assert head_only["backbone"] == set() and head_only["trainable_weights"] == 2
    assert expected and tuned["backbone"] == expected
    assert np.isclose(head_only["learning_rate"], 1e-3)
    assert np.isclose(tuned["learning_rate"], 1e-3 * 0.1)
    assert history.epoch == [0, 1] and len(history.history["loss"]) == 2
    for layer in backbone.layers:  # frozen layers, BatchNorm statistics included, are untouched
        changed = any(
            not np.array_equal(a, b)
            for a, b in zip(layer.get_weights(), before[layer.name], strict=True)
        )
        assert changed == (layer.name in expected), layer.name


def stub_fit(model: keras.Model, calls: list, stop_after: int | None = None):
    """Replaces `model.fit` by a recorder; `stop_after` epochs end the first call early."""

    def fit(*args, epochs, initial_epoch=0, **kwargs):
        last = epochs if stop_after is None or calls else initial_epoch + stop_after
        calls.append((initial_epoch, epochs, bool(trainable_backbone_layers(model))))
        history = keras.callbacks.History()
        history.epoch = list(range(initial_epoch, last))
        history.history = {"loss": [0.0] * len(history.epoch)}
        return history

    model.fit = fit


@pytest.mark.parametrize(
    "pretrained, tune, epochs, initial_epoch, stop_after, calls",
    [
        (True, 0, 3, 0, None, [(0, 3, False)]),
        (True, 10, 5, 0, None, [(0, 3, False), (3, 5, True)]),
        (True, 10, 1, 0, None, [(0, 1, False)]),
        (True, 10, 5, 4, None, [(4, 5, True)]),
        (True, 10, 5, 0, 1, [(0, 3, False), (1, 5, True)]),
        (False, 0, 4, 0, None, [(0, 4, True)]),
    ],
    ids=["frozen", "two-phases", "one-epoch", "resumed", "early-stopped-head", "scratch"],
)
def test_fit_phases(weights_file, pretrained, tune, epochs, initial_epoch, stop_after, calls):
    options = {**SMALL, "weights": str(weights_file[0])} if pretrained else SMALL
    space = TransferLearning(RGB, **options)
    hp = kt.HyperParameters()
    if pretrained:
        hp.Fixed("fine_tune_layers", tune)
    model = space.build(hp)
    seen: list = []
    stub_fit(model, seen, stop_after)
    history = space.fit(hp, model, None, epochs=epochs, initial_epoch=initial_epoch)
    assert seen == calls
    assert history.epoch == list(range(initial_epoch, history.epoch[-1] + 1))  # no gaps


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # never stepped
def test_saved_model_reloads_with_equal_predictions(tmp_path):
    model, _ = build(GREY, pinned={"dense_units": 128}, image_size=32, **SMALL)
    images = raw_images(2, (28, 28, 1))
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
