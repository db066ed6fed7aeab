"""The GAN as one Keras model: a generator and a discriminator trained alternately in
`train_step`, reporting the adversarial losses and the sample quality."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from filelock import FileLock
from keras import ops

from search_spaces.gan_quality import ClassifierScore

CLASSIFIER_EPOCHS = 2  # the fallback classifier's training, before the GAN's first epoch


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
