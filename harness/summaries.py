"""Image summaries for TensorBoard: labelled training examples and confusion matrices."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES_SHOWN = 8  # images in the example grid


def examples_drawn(board: Path) -> bool:
    """Whether a job's `examples` run `board` has its grid already (an event file)."""
    return any(board.glob("events.out.tfevents.*"))


def write_examples(
    log_dir: Path,
    images,
    labels,
    class_names: list[str],
    augmented: bool,
    count: int = EXAMPLES_SHOWN,
) -> None:
    """A few training images as the model sees them (before its rescaling), in one grid, each
    titled with its class; the tag says whether they are augmented."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images[:count], np.float32) / 255.0
    labels = np.asarray(labels[:count]).reshape(-1)
    columns = min(4, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=1)
        ax.set_title(_name(class_names, int(label)), fontsize=9)
    tag = "training_examples_augmented" if augmented else "training_examples"
    _write_figure(log_dir, tag, fig)


def write_examples_once(examples: dict[str, Any]) -> None:
    """Draws the example batch a trial sent (`trial_runner._examples`) into its board, unless
    an earlier trial's is there."""
    board = Path(examples["board"])
    if examples_drawn(board):
        return
    write_examples(
        board,
        examples["images"],
        examples["labels"],
        examples["class_names"],
        examples["augmented"],
    )


def _name(class_names: list[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def _write_figure(log_dir: Path, tag: str, fig) -> None:
    """A matplotlib figure as one TensorBoard image."""
    import matplotlib.pyplot as plt
    import tensorflow as tf

    with warnings.catch_warnings():  # a class named by an emoji: a box, not a stderr line
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.tight_layout()
        fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0
    plt.close(fig)
    with _writer(log_dir) as writer, writer.as_default():
        tf.summary.image(tag, pixels[None], step=0)


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


def write_confusion(log_dir: Path, matrix: np.ndarray, class_names: list[str]) -> None:
    """The matrix as a heat-map image (rows: true class, columns: predicted, row-normalised,
    class names on both axes, counts in the cells) and as a markdown table with the counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(matrix)
    names = [_name(class_names, i) for i in range(n)]
    size = max(5.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion on the test split ({int(matrix.sum())} examples)")
    if n <= 20:
        for (i, j), count in np.ndenumerate(matrix):
            color = "white" if rows[i, j] > 0.5 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    _write_figure(log_dir, "confusion_matrix", fig)
    header = "| true \\ predicted | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (n + 1)]
    lines += [
        f"| {name} | " + " | ".join(str(v) for v in row) + " |"
        for name, row in zip(names, matrix, strict=True)
    ]
    with _writer(log_dir) as writer, writer.as_default():
        tf.summary.text("confusion_matrix_counts", "\n".join(lines), step=0)
