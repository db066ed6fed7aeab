"""How good a GAN's samples are: the classifier score, its classifier (given, or a small CNN
trained once and cached), and the TensorBoard sample grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from harness_core.errors import UserError
from pipelines.base import DataMeta

GRID_ROWS = 4


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


def _safe_log(x):
    return ops.log(ops.maximum(x, 1e-12))  # 0 * log 0 counts as 0
