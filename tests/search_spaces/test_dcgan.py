"""The DCGAN space: default point = the tutorial DCGAN; branches train; quality means quality."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from harness.errors import UserError
from pipelines.base import DataMeta
from search_spaces.dcgan import DCGAN, GANSampleGrid, classifier_score, small_classifier
from tests.conftest import tiny_images

SMALL = {"latent_dim": 64, "generator_width": 64, "discriminator_width": 32}


def meta(shape=(28, 28, 1), classes=10, fingerprint="test") -> DataMeta:
    names = [str(i) for i in range(classes)]
    return DataMeta("image_classification", shape, classes, names, 100, 10, 10, fingerprint)


def pinned(**values) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def batches(shape, n=16, repeat=True):
    """(images, labels) batches of 8 raw [0, 255] pixels, as the image pipeline gives them."""
    images = np.random.uniform(0, 255, size=(n, *shape)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((images, np.random.randint(0, 10, size=n)))
    ds = ds.batch(8, drop_remainder=True)
    return ds.repeat() if repeat else ds


def layer_filters(model, kind: str) -> list[int]:
    return [layer.filters for layer in model.layers if type(layer).__name__ == kind]


def same_weights(a, b) -> bool:
    pairs = zip(a.get_weights(), b.get_weights(), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Fallback classifiers cache under a fresh data dir; TF ops seeded too."""
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    keras.utils.set_random_seed(0)


@pytest.fixture
def classifier_file(tmp_path):
    def save(data: DataMeta) -> str:
        path = tmp_path / f"classifier_{'x'.join(map(str, data.input_shape))}.keras"
        small_classifier(data).save(path)
        return str(path)

    return save


def test_default_point_is_the_tutorial_dcgan():
    model = DCGAN(meta()).build(kt.HyperParameters())
    generator, discriminator = model.generator, model.discriminator
    assert generator.input_shape == (None, 100)
    assert generator.output_shape == (None, 28, 28, 1)
    assert layer_filters(generator, "Conv2DTranspose") == [128, 64, 1]
    assert layer_filters(discriminator, "Conv2D") == [64, 128]
    assert generator.layers[1].units == 7 * 7 * 256
    # The tutorial's parameter counts.
    assert (generator.count_params(), discriminator.count_params()) == (2_330_944, 212_865)
    for optimizer in (model.g_optimizer, model.d_optimizer):
        assert type(optimizer).__name__ == "Adam"
        assert np.isclose(float(optimizer.learning_rate), 1e-4)
    assert model.label_smoothing == 0.0


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 1), (32, 32, 3)])
def test_every_supported_size_generates_that_size(shape):
    model = DCGAN(meta(shape)).build(pinned(**SMALL))
    assert model.generator.output_shape == (None, *shape)
    assert model.discriminator.input_shape == (None, *shape)
    assert layer_filters(model.generator, "Conv2DTranspose") == [32, 16, shape[-1]]
    assert layer_filters(model.discriminator, "Conv2D") == [32, 64]


@pytest.mark.parametrize(
    "shape,values,user_classifier",
    [
        ((28, 28, 1), SMALL, True),
        (
            (28, 28, 1),
            {"latent_dim": 128, "generator_width": 128, "discriminator_width": 128,
             "label_smoothing": 0.1, "generator_lr": 1e-3},
            True,
        ),
        ((32, 32, 3), {"latent_dim": 100, "generator_width": 64}, False),
    ],
    ids=["small", "wide-smoothed", "32x32x3-fallback-classifier"],
)  # fmt: skip
def test_branches_train_one_epoch_like_a_trial(
    shape, values, user_classifier, classifier_file, tmp_path
):
    data = meta(shape)
    space = DCGAN(data, quality_classifier=classifier_file(data) if user_classifier else None)
    model = space.build(pinned(**values))
    callbacks = [
        keras.callbacks.TensorBoard(str(tmp_path / "tb"), write_graph=False, profile_batch=0),
        *space.extra_callbacks(tmp_path / "tb"),
    ]
    history = model.fit(
        batches(shape),
        validation_data=batches(shape, repeat=False),
        steps_per_epoch=2,
        epochs=1,
        callbacks=callbacks,
        verbose=0,
    )
    logs = {name: series[-1] for name, series in history.history.items()}
    assert {"d_loss", "g_loss", "loss", "quality", "val_loss", "val_quality"} <= set(logs)
    assert all(np.isfinite(value) for value in logs.values())
    assert np.isclose(logs["loss"], logs["d_loss"] + logs["g_loss"], rtol=1e-5)
    assert 1.0 - 1e-5 <= logs["val_quality"] <= data.num_classes
    samples = keras.ops.convert_to_numpy(model.generator(np.zeros((2, values["latent_dim"]))))
    assert samples.shape == (2, *shape) and samples.min() >= 0.0 and samples.max() <= 255.0
    assert list((tmp_path / "tb" / "samples").iterdir())
    caches = list((tmp_path / "data").rglob("*.weights.h5"))
    assert len(caches) == (0 if user_classifier else 1)


def test_fallback_classifier_is_trained_once_per_data_and_kept_in_checkpoints(tmp_path):
    data = meta()
    rng = np.random.default_rng(0)
    images, labels = tiny_images(640, rng)
    images = images[..., None].astype("float32")
    train = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32).repeat()
    first = DCGAN(data).build(pinned(**SMALL))
    first.prepare_classifier(train, steps_per_epoch=20)

    held_out, _ = tiny_images(256, rng)
    probs = first.classifier.predict(held_out[..., None].astype("float32"), verbose=0)
    assert classifier_score(probs) > 5.0  # diverse real images score high
    blank = np.full((256, 28, 28, 1), 30.0, "float32")
    assert classifier_score(first.classifier.predict(blank, verbose=0)) < 1.5

    # Blank training images: a retrained classifier would differ from the cached one.
    blank_train = train.map(lambda x, y: (x * 0, y))
    second = DCGAN(data).build(pinned(**SMALL))
    second.prepare_classifier(blank_train, steps_per_epoch=20)
    assert same_weights(first.classifier, second.classifier)

    # A Hyperband warm start (or an export) scores with the checkpoint's classifier.
    first.save_weights(str(tmp_path / "best.weights.h5"))
    warm = DCGAN(meta(fingerprint="other data")).build(pinned(**SMALL))
    warm.load_weights(str(tmp_path / "best.weights.h5"))
    warm.prepare_classifier(blank_train, steps_per_epoch=20)
    assert same_weights(first.classifier, warm.classifier)
    assert len(list((tmp_path / "data").rglob("*.weights.h5"))) == 1


def test_classifier_score_spans_one_to_num_classes():
    k = 10
    diverse = np.eye(k)[np.arange(200) % k]
    assert np.isclose(classifier_score(diverse), k, rtol=1e-4)
    assert np.isclose(classifier_score(np.tile(np.eye(k)[3], (200, 1))), 1.0)
    assert np.isclose(classifier_score(np.full((200, k), 1 / k)), 1.0)
    half_confident = np.eye(k)[np.arange(200) % 2]  # confident, but only 2 of 10 classes
    assert np.isclose(classifier_score(half_confident), 2.0, rtol=1e-4)
    random = np.random.default_rng(0).dirichlet(np.ones(k), size=200)
    assert 1.0 < classifier_score(random) < k


def test_classifier_score_streams_over_batches():
    from search_spaces.dcgan import ClassifierScore

    probs = np.random.default_rng(0).dirichlet(np.full(5, 0.3), size=64).astype("float32")
    metric = ClassifierScore(5)
    for part in np.split(probs, 4):
        metric.update_state(part)
    assert np.isclose(float(metric.result()), classifier_score(probs), rtol=1e-5)


def test_sample_grid_writes_a_4x4_image_every_n_epochs(tmp_path):
    space = DCGAN(meta(), sample_every=2)
    (callback,) = space.extra_callbacks(tmp_path)
    assert isinstance(callback, GANSampleGrid) and callback.every == 2
    callback.set_model(space.build(pinned(**SMALL)))
    callback.on_train_begin()
    for epoch in range(4):
        callback.on_epoch_end(epoch)
    callback.on_train_end()

    written = {}
    for path in (tmp_path / "samples").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                width, height, png = tf.make_ndarray(value.tensor)[:3]
                written[event.step] = (value.tag, int(height), int(width), png)
    assert sorted(written) == [1, 3]
    tag, height, width, png = written[3]
    assert (tag, height, width) == ("samples", 4 * 28, 4 * 28)
    assert tf.io.decode_png(png).shape == (112, 112, 1)


@pytest.mark.parametrize("shape", [(64, 64, 3), (28, 28, 3)])
def test_unsupported_image_size_is_a_user_error(shape):
    size = "x".join(map(str, shape))
    with pytest.raises(UserError, match=rf"{size}.*supported: 28x28x1, 32x32x1, 32x32x3"):
        DCGAN(meta(shape))


def test_missing_quality_classifier_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="quality_classifier: no file at"):
        DCGAN(meta(), quality_classifier=str(tmp_path / "missing.keras"))


def test_classifier_of_other_data_is_a_user_error(classifier_file):
    path = classifier_file(meta((32, 32, 3)))
    with pytest.raises(UserError, match="quality_classifier"):
        DCGAN(meta(), quality_classifier=path).build(kt.HyperParameters())


def test_sample_every_must_be_positive():
    with pytest.raises(UserError, match="sample_every"):
        DCGAN(meta(), sample_every=0)
