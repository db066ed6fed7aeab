"""DCGAN whose default point is the TensorFlow DCGAN tutorial; tuned on sample quality.

Default: generator Dense(100 -> 7x7x256)-BN-LeakyReLU-ConvT128-ConvT64-ConvT1(tanh),
discriminator Conv64-Conv128-Dense(1) with LeakyReLU and Dropout 0.3, Adam 1e-4 for both.
Labels of the image data are ignored for the GAN itself.

Objectives:
    quality / val_quality: the classifier score exp(E_x[KL(p(y|x) || p(y))]) of generated
        samples, an Inception-Score analogue with a classifier of the same data. Higher is
        better, in [1, num_classes]. `quality` covers the samples the generator made while
        training that epoch; `val_quality` one generated batch per validation batch, made by
        the end-of-epoch generator in inference mode.
    loss / val_loss: d_loss + g_loss, the two adversarial losses. Reported because Keras and
        early stopping expect a loss; it does not measure sample quality. Validation losses use
        hard (unsmoothed) labels so trials with different label smoothing compare.

The classifier is `quality_classifier` (a `.keras` model of the same data taking [0, 255]
pixels and returning class probabilities, such as an exported `image_cnn`) or else a small CNN
that `GANModel.fit` trains for CLASSIFIER_EPOCHS epochs of `steps_per_epoch` training batches
before the GAN trains. That fallback is cached per data fingerprint under
`$HARNESS_DATA_DIR/harness_cache/quality_classifiers/` behind a file lock, so every trial on
the same data (and machine or shared data directory) is scored by one classifier and only the
first pays for training it. The classifier's weights travel in the trial's checkpoint, so a
warm start (Hyperband) or an export scores with the same one.

The generator, `model.generator`, maps a latent vector to an image in [0, 255] float32 (its tanh
output rescaled), the pipelines' pixel convention; the discriminator scales pixels back to
[-1, 1] as its first layer. `DCGAN.extra_callbacks` gives a TensorBoard sample grid.
"""

from __future__ import annotations

from pathlib import Path

import keras
import keras_tuner as kt
import tensorflow as tf
from keras import layers

from harness_core.errors import UserError
from pipelines.base import DataMeta
from pipelines.cache import cache_key
from pipelines.tfds_source import resolve_data_dir
from search_spaces.base import SearchSpace
from search_spaces.gan_model import GANModel
from search_spaces.gan_quality import (  # noqa: F401  (ClassifierScore, classifier_score: public here)
    ClassifierScore,
    GANSampleGrid,
    classifier_score,
    load_classifier,
    small_classifier,
)

SUPPORTED_SHAPES = ((28, 28, 1), (32, 32, 1), (32, 32, 3))
KERNEL_SIZE = 5
DROPOUT = 0.3
CLASSIFIER_VERSION = 1  # bump when the fallback classifier changes, so old caches are not read


class DCGAN(SearchSpace):
    """DCGAN over 28x28x1, 32x32x1 or 32x32x3 images, scored by a classifier of the same data.

    Args:
        meta: The image data.
        quality_classifier: Path of a `.keras` classifier of the same data; None trains (once
            per data fingerprint) a small one at the start of `fit`.
        sample_every: Epochs between sample grids written to TensorBoard.
    """

    tasks = ("image_classification",)
    metrics = ["quality"]

    def __init__(
        self, meta: DataMeta, quality_classifier: str | None = None, sample_every: int = 1
    ):
        super().__init__(meta, quality_classifier=quality_classifier, sample_every=sample_every)
        _check_shape(meta.input_shape)
        if not isinstance(sample_every, int) or sample_every < 1:
            raise UserError(
                f"search_space.options.sample_every: {sample_every!r} must be an integer >= 1"
            )
        if quality_classifier and not Path(quality_classifier).expanduser().is_file():
            raise UserError(
                f"search_space.options.quality_classifier: no file at {quality_classifier!r}"
            )
        self.quality_classifier = quality_classifier
        self.sample_every = sample_every

    def build(self, hp: kt.HyperParameters) -> GANModel:
        """The compiled `GANModel` for `hp`."""
        latent_dim = hp.Choice("latent_dim", [64, 100, 128], default=100)
        model = GANModel(
            self._generator(hp, latent_dim),
            self._discriminator(hp),
            self._classifier(),
            label_smoothing=hp.Float("label_smoothing", 0.0, 0.2, step=0.1, default=0.0),
            classifier_cache=None if self.quality_classifier else self._classifier_cache(),
            name="dcgan",
        )
        model.compile(
            g_optimizer=keras.optimizers.Adam(_learning_rate(hp, "generator_lr")),
            d_optimizer=keras.optimizers.Adam(_learning_rate(hp, "discriminator_lr")),
        )
        return model

    def extra_callbacks(self, log_dir: str | Path) -> list[keras.callbacks.Callback]:
        """Callbacks a trial adds for this space: the sample grid in TensorBoard."""
        return [GANSampleGrid(log_dir, every=self.sample_every)]

    def serving(self, model, pipeline, hp):
        """What ships is the generator: latent noise in, [0, 255] images out."""
        from pipelines.base import Serving

        generator = model.generator
        spec = tf.TensorSpec((None, generator.input_shape[-1]), tf.float32, name="noise")
        return generator, Serving(spec, lambda z: {"images": generator(z, training=False)})

    def _generator(self, hp, latent_dim: int) -> keras.Model:
        height, _, channels = self.meta.input_shape
        depth = hp.Choice("generator_width", [64, 128, 256], default=256)
        start = height // 4  # two stride-2 blocks upsample 7 -> 28 or 8 -> 32
        noise = keras.Input(shape=(latent_dim,), name="noise")
        x = layers.Dense(start * start * depth, use_bias=False)(noise)
        x = layers.LeakyReLU()(layers.BatchNormalization()(x))
        x = layers.Reshape((start, start, depth))(x)
        for strides in (1, 2):
            depth //= 2
            x = layers.Conv2DTranspose(
                depth, KERNEL_SIZE, strides=strides, padding="same", use_bias=False
            )(x)
            x = layers.LeakyReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2DTranspose(
            channels, KERNEL_SIZE, strides=2, padding="same", use_bias=False, activation="tanh"
        )(x)
        images = layers.Rescaling(127.5, offset=127.5, name="pixels")(x)
        return keras.Model(noise, images, name="generator")

    def _discriminator(self, hp) -> keras.Model:
        width = hp.Choice("discriminator_width", [32, 64, 128], default=64)
        images = keras.Input(shape=self.meta.input_shape, name="image")
        x = layers.Rescaling(1 / 127.5, offset=-1.0)(images)  # real and fake share this scaling
        for filters in (width, 2 * width):
            x = layers.Conv2D(filters, KERNEL_SIZE, strides=2, padding="same")(x)
            x = layers.Dropout(DROPOUT)(layers.LeakyReLU()(x))
        logits = layers.Dense(1, name="logit")(layers.Flatten()(x))
        return keras.Model(images, logits, name="discriminator")

    def _classifier(self) -> keras.Model:
        if self.quality_classifier:
            return load_classifier(self.quality_classifier, self.meta)
        return small_classifier(self.meta)

    def _classifier_cache(self) -> Path:
        key = cache_key(
            fingerprint=self.meta.fingerprint,
            shape=self.meta.input_shape,
            classes=self.meta.num_classes,
            version=CLASSIFIER_VERSION,
        )
        return resolve_data_dir() / "harness_cache" / "quality_classifiers" / f"{key}.weights.h5"


def _check_shape(shape: tuple[int, ...]) -> None:
    if tuple(shape) not in SUPPORTED_SHAPES:
        supported = ", ".join("x".join(map(str, s)) for s in SUPPORTED_SHAPES)
        raise UserError(
            f"search space DCGAN: images of shape {'x'.join(map(str, shape))} are not "
            f"supported; supported: {supported}"
        )


def _learning_rate(hp, name: str) -> float:
    return hp.Float(name, 1e-5, 1e-3, sampling="log", default=1e-4)
