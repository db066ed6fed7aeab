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

import os
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf
from filelock import FileLock
from keras import layers, ops

from harness_core.errors import UserError
from pipelines.base import DataMeta
from pipelines.cache import cache_key
from pipelines.tfds_source import resolve_data_dir
from search_spaces.base import SearchSpace

SUPPORTED_SHAPES = ((28, 28, 1), (32, 32, 1), (32, 32, 3))
KERNEL_SIZE = 5
DROPOUT = 0.3
CLASSIFIER_EPOCHS = 2
CLASSIFIER_VERSION = 1  # bump when the fallback classifier changes, so old caches are not read
GRID_ROWS = 4


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


class GANModel(keras.Model):
    """A generator and a discriminator trained alternately, reporting sample quality.

    Attributes:
        generator: Latent vector -> image in [0, 255] float32; what an exporter saves.
        discriminator: Image in [0, 255] -> real/fake logit.
        classifier: Frozen classifier scoring generated samples (see `ClassifierScore`).
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        classifier: keras.Model,
        label_smoothing: float = 0.0,
        classifier_cache: Path | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.classifier = classifier
        self.label_smoothing = label_smoothing
        self.latent_dim = generator.input_shape[-1]
        self.classifier_cache = classifier_cache
        # A variable, not a Python flag, so checkpoints say whether the classifier is trained.
        self.classifier_ready = self.add_weight(
            shape=(),
            initializer="zeros" if classifier_cache else "ones",
            trainable=False,
            name="classifier_ready",
        )
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("d_loss", "g_loss")}
        self.trackers["loss"] = keras.metrics.Mean(name="loss")
        self.quality = ClassifierScore(classifier.output_shape[-1], name="quality")
        self.built = True  # the parts are built functional models; there is no call()

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [*self.trackers.values(), self.quality]

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        **kwargs: Any,
    ) -> None:
        """Sets the generator's and the discriminator's optimizers."""
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        # Build now, inside the strategy scope of `build`, not lazily inside a replica.
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)

    def fit(self, x=None, *args: Any, **kwargs: Any):
        """`keras.Model.fit`, after making the quality classifier ready (see module doc)."""
        self.prepare_classifier(x, kwargs.get("steps_per_epoch"))
        return super().fit(x, *args, **kwargs)

    def prepare_classifier(self, dataset, steps_per_epoch: int | None = None) -> None:
        """Loads the cached fallback classifier, or trains it on `dataset` and caches it."""
        if float(ops.convert_to_numpy(self.classifier_ready)):
            return
        path = self.classifier_cache
        path.parent.mkdir(parents=True, exist_ok=True)
        # One trial trains; concurrent trials on the same data wait and then load its weights.
        with FileLock(str(path) + ".lock"):
            if path.exists():
                self.classifier.load_weights(str(path))
            else:
                self._train_classifier(dataset, steps_per_epoch)
                tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
                self.classifier.save_weights(str(tmp))
                os.replace(tmp, path)
        self.classifier_ready.assign(1.0)

    def _train_classifier(self, dataset, steps_per_epoch: int | None) -> None:
        self.classifier.trainable = True
        with self.distribute_strategy.scope():
            self.classifier.compile(
                optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy"
            )
        self.classifier.fit(
            dataset, steps_per_epoch=steps_per_epoch, epochs=CLASSIFIER_EPOCHS, verbose=0
        )
        self.classifier.trainable = False

    def train_step(self, data):
        real = _images(data)
        batch = tf.shape(real)[0]
        d_loss = self._discriminator_step(real)
        g_loss, fake = self._generator_step(batch)
        self.quality.update_state(self.classifier(fake, training=False))
        return self._report(d_loss, g_loss)

    def test_step(self, data):
        real = _images(data)
        fake = self.generator(self._noise(tf.shape(real)[0]), training=False)
        fake_logits = self.discriminator(fake, training=False)
        d_loss = _bce(self.discriminator(real, training=False), 1.0) + _bce(fake_logits, 0.0)
        self.quality.update_state(self.classifier(fake, training=False))
        return self._report(tf.reduce_mean(d_loss), tf.reduce_mean(_bce(fake_logits, 1.0)))

    def _discriminator_step(self, real):
        fake = self.generator(self._noise(tf.shape(real)[0]), training=True)
        with tf.GradientTape() as tape:
            real_loss = _bce(self.discriminator(real, training=True), 1.0 - self.label_smoothing)
            per_example = real_loss + _bce(self.discriminator(fake, training=True), 0.0)
            loss = tf.nn.compute_average_loss(per_example)  # / global batch, for replicas
        _apply(self.d_optimizer, tape, loss, self.discriminator.trainable_variables)
        return tf.reduce_mean(per_example)

    def _generator_step(self, batch):
        with tf.GradientTape() as tape:
            fake = self.generator(self._noise(batch), training=True)
            per_example = _bce(self.discriminator(fake, training=True), 1.0)
            loss = tf.nn.compute_average_loss(per_example)
        _apply(self.g_optimizer, tape, loss, self.generator.trainable_variables)
        return tf.reduce_mean(per_example), tf.stop_gradient(fake)

    def _noise(self, batch):
        return tf.random.normal((batch, self.latent_dim))

    def _report(self, d_loss, g_loss) -> dict[str, Any]:
        self.trackers["d_loss"].update_state(d_loss)
        self.trackers["g_loss"].update_state(g_loss)
        self.trackers["loss"].update_state(d_loss + g_loss)
        return {metric.name: metric.result() for metric in self.metrics}


class ClassifierScore(keras.metrics.Metric):
    """exp(E_x[KL(p(y|x) || p(y))]) over all class probabilities seen since the last reset.

    Streams through sufficient statistics, since E[KL] = E_x[sum_y p log p] - sum_y p(y) log p(y)
    with p(y) = E_x[p(y|x)]: 1 when every sample gets the same prediction, num_classes when
    predictions are confident and spread evenly over the classes.
    """

    def __init__(self, num_classes: int, name: str = "quality", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")
        self.prob_sum = self.add_variable(
            shape=(num_classes,), initializer="zeros", name="prob_sum"
        )
        self.neg_entropy_sum = self.add_variable(
            shape=(), initializer="zeros", name="neg_entropy_sum"
        )

    def update_state(self, probs, sample_weight=None) -> None:
        probs = ops.cast(probs, "float32")
        self.count.assign_add(ops.cast(ops.shape(probs)[0], "float32"))
        self.prob_sum.assign_add(ops.sum(probs, axis=0))
        self.neg_entropy_sum.assign_add(ops.sum(probs * _safe_log(probs)))

    def result(self):
        count = ops.maximum(self.count, 1.0)
        marginal = self.prob_sum / count
        return ops.exp(self.neg_entropy_sum / count - ops.sum(marginal * _safe_log(marginal)))


def classifier_score(probs: np.ndarray) -> float:
    """The classifier score of an (examples, classes) array of class probabilities."""
    metric = ClassifierScore(probs.shape[-1])
    metric.update_state(probs)
    return float(metric.result())


class GANSampleGrid(keras.callbacks.Callback):
    """Writes a 4x4 grid of samples from fixed noise to TensorBoard every `every` epochs.

    The images go to the run `<log_dir>/samples` under the tag "samples", stepped by epoch like
    Keras's own epoch summaries; fixed noise shows one set of samples evolving.
    """

    def __init__(self, log_dir: str | Path, every: int = 1, seed: int = 0):
        super().__init__()
        self.log_dir = Path(log_dir) / "samples"
        self.every = every
        self.seed = seed
        self._writer = None
        self._noise = None

    def on_train_begin(self, logs=None):
        latent_dim = self.model.generator.input_shape[-1]
        rng = np.random.default_rng(self.seed)
        self._noise = rng.standard_normal((GRID_ROWS**2, latent_dim)).astype("float32")
        self._writer = tf.summary.create_file_writer(str(self.log_dir))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        images = ops.convert_to_numpy(self.model.generator(self._noise, training=False))
        with self._writer.as_default():
            tf.summary.image("samples", sample_grid(images)[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


def sample_grid(images: np.ndarray, rows: int = GRID_ROWS) -> np.ndarray:
    """(rows*cols, h, w, c) pixels in [0, 255] -> one (rows*h, cols*w, c) uint8 image."""
    n, h, w, c = images.shape
    grid = images.reshape(rows, n // rows, h, w, c).transpose(0, 2, 1, 3, 4)
    return np.clip(np.round(grid.reshape(rows * h, -1, c)), 0, 255).astype(np.uint8)


def load_classifier(path: str, meta: DataMeta) -> keras.Model:
    """A user's `.keras` classifier, frozen, checked to fit the data."""
    try:
        model = keras.models.load_model(str(Path(path).expanduser()), compile=False)
    except (OSError, ValueError) as e:
        raise UserError(
            f"search_space.options.quality_classifier: cannot load {path!r}: {e}"
        ) from e
    expected = ((None, *meta.input_shape), meta.num_classes)
    if (tuple(model.input_shape), model.output_shape[-1]) != expected:
        raise UserError(
            f"search_space.options.quality_classifier: {path!r} maps {model.input_shape} to "
            f"{model.output_shape}; the data needs {expected[0]} -> {meta.num_classes} classes"
        )
    model.trainable = False
    return model


def small_classifier(meta: DataMeta) -> keras.Model:
    """The fallback quality classifier: a two-conv CNN on [0, 255] pixels (~35k parameters)."""
    images = keras.Input(shape=meta.input_shape, name="image")
    x = layers.Rescaling(1 / 255)(images)
    for filters in (32, 64):
        x = layers.MaxPooling2D()(layers.Conv2D(filters, 3, activation="relu")(x))
    probs = layers.Dense(meta.num_classes, activation="softmax")(layers.Flatten()(x))
    model = keras.Model(images, probs, name="quality_classifier")
    model.trainable = False
    return model


def _check_shape(shape: tuple[int, ...]) -> None:
    if tuple(shape) not in SUPPORTED_SHAPES:
        supported = ", ".join("x".join(map(str, s)) for s in SUPPORTED_SHAPES)
        raise UserError(
            f"search space DCGAN: images of shape {'x'.join(map(str, shape))} are not "
            f"supported; supported: {supported}"
        )


def _learning_rate(hp, name: str) -> float:
    return hp.Float(name, 1e-5, 1e-3, sampling="log", default=1e-4)


def _images(data):
    images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return tf.cast(images, "float32")


def _bce(logits, target: float):
    """Per-example sigmoid cross-entropy of (batch, 1) logits against a constant target."""
    labels = tf.fill(tf.shape(logits), tf.cast(target, logits.dtype))
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), axis=-1)


def _apply(optimizer, tape, loss, variables) -> None:
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables, strict=True))


def _safe_log(x):
    return ops.log(ops.maximum(x, 1e-12))  # 0 * log 0 counts as 0
