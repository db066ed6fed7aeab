"""Image summaries for TensorBoard: augmented training examples and confusion matrices."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np


def write_examples(log_dir: Path, images, step: int = 0, count: int = 8) -> None:
    """A few (augmented) training images, as the model sees them before its rescaling."""
    import tensorflow as tf

    images = tf.cast(images[:count], tf.float32) / 255.0
    with _writer(log_dir) as writer, writer.as_default():
        tf.summary.image("augmented_training_examples", images, step=step, max_outputs=count)


@contextlib.contextmanager
def _writer(log_dir: Path):
    """A summary writer closed on exit: the event file is complete when the call returns, and
    a warm worker writing one per trial holds no open file or writer resource afterwards."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        yield writer
    finally:
        writer.close()


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def write_confusion(log_dir: Path, matrix: np.ndarray, class_names: list[str]) -> None:
    """The matrix as a heat-map image (rows: true class, columns: predicted, row-normalised)
    and as a markdown table with the counts."""
    import tensorflow as tf

    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    cell = max(8, 256 // len(matrix))
    heat = np.kron(rows, np.ones((cell, cell)))[..., None]
    # white (0) to dark blue (1): easy to read on TensorBoard's light background
    rgb = np.concatenate([1 - heat, 1 - 0.6 * heat, np.ones_like(heat) - 0.2 * heat], axis=-1)
    header = "| true \\ predicted | " + " | ".join(class_names) + " |"
    lines = [header, "|" + "---|" * (len(class_names) + 1)]
    lines += [
        f"| {name} | " + " | ".join(str(v) for v in row) + " |"
        for name, row in zip(class_names, matrix, strict=True)
    ]
    with _writer(log_dir) as writer, writer.as_default():
        tf.summary.image("confusion_matrix", rgb[None].astype(np.float32), step=0)
        tf.summary.text("confusion_matrix_counts", "\n".join(lines), step=0)
