"""Sequence classification: 1-D signals and feature sequences from a `.npz` of float arrays.

`x_train`/`x_test` are `(N, L)` (one channel) or `(N, L, C)` numbers: sensor traces, MNIST-1D,
tabular rows as `(N, 1, F)` (one step of F channels, each normalised on its own);
`y_train`/`y_test` integer class ids; an optional
`class_names` array of strings. Every value must be finite. Validation takes
`validation_split` of the training examples (per class with `stratify`, the default), after
`train_examples` takes a seeded random subset.

Values are not rescaled here: the training split's per-channel mean and variance go to the
model (`DataMeta.extra`), whose first layer normalises, so an exported model takes raw values.
Train order: arrays -> cache -> shuffle -> repeat -> batch(drop_remainder) -> prefetch.
"""

from __future__ import annotations

import functools
import zipfile
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict

from harness_core.errors import UserError
from pipelines.base import (
    DataMeta,
    LabelledSplitsConfig,
    Pipeline,
    Serving,
    TrainData,
    for_training,
)
from pipelines.image_sources import check_classes, check_labels, id_names, split_train

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


class SequenceClassificationConfig(LabelledSplitsConfig):
    """The `data:` section of a sequence classification job."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["sequence_classification"] = "sequence_classification"
    arrays: str
    stratify: bool = True


def load_sequence_arrays(path: Path) -> dict[str, np.ndarray]:
    """The npz's arrays, checked: UserError naming the file and the first problem."""
    if not path.is_file():
        raise UserError(f"data.arrays: {path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy: one bare array
            raise UserError(
                f"{path}: not a dataset npz (one array of shape {loaded.shape}); save "
                "x_train, y_train, x_test, y_test with numpy.savez"
            )
        with loaded as f:
            missing = [k for k in ARRAY_KEYS if k not in f.files]
            if missing:
                raise UserError(
                    f"{path}: not a dataset npz: missing array {missing[0]!r} "
                    "(need x_train, y_train, x_test, y_test)"
                )
            arrays = {k: f[k] for k in (*ARRAY_KEYS, "class_names") if k in f.files}
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: corrupt or truncated npz file ({e})") from None
    shapes = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (2, 3) or not len(x):
            raise UserError(
                f"{path}: x_{split} must be (N, L) or (N, L, C) numbers, got shape {x.shape}"
            )
        if x.dtype.kind not in "iuf":
            raise UserError(f"{path}: x_{split} must hold numbers, got {x.dtype}")
        if len(y) != len(x):
            raise UserError(f"{path}: x_{split} has {len(x)} examples but y_{split} {len(y)}")
        if x.dtype.kind == "f":
            # Finite as float32, which the model reads: 1e39 is finite in float64 but inf there
            # (the trials then "diverged" with a NaN loss, blaming training for the data).
            with np.errstate(over="ignore"):
                bad = np.argwhere(~np.isfinite(x.astype(np.float32)))
            if len(bad):
                where = ", ".join(str(int(i)) for i in bad[0])
                raise UserError(
                    f"{path}: x_{split}[{where}] = {x[tuple(bad[0])]} is not a finite float32 "
                    f"number ({len(bad)} such values)"
                )
        shapes[split] = x.shape[1:] if x.ndim == 3 else (*x.shape[1:], 1)
    if shapes["train"] != shapes["test"]:
        raise UserError(
            f"{path}: x_train examples are {shapes['train']} (length, channels) but x_test "
            f"examples are {shapes['test']}"
        )
    names = arrays.get("class_names")
    num_classes = None if names is None else len(names)
    for split in ("train", "test"):
        check_labels(path, f"y_{split}", arrays[f"y_{split}"], num_classes, "class_names")
    check_classes(path, arrays["y_train"], arrays["y_test"])
    return arrays


class SequenceClassificationPipeline(Pipeline):
    Config = SequenceClassificationConfig
    task = "sequence_classification"
    supports_refit = True
    config: SequenceClassificationConfig

    @functools.cached_property
    def path(self) -> Path:
        return Path(self.config.arrays).expanduser()

    @functools.cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        return load_sequence_arrays(self.path)

    def check_available(self) -> None:
        self.describe()

    @functools.cached_property
    def _parts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(x as float32 (N, L, C), y as int64) of train, validation and test."""
        c = self.config
        a = self.arrays

        def shaped(x: np.ndarray) -> np.ndarray:
            x = x.astype(np.float32)
            return x[..., None] if x.ndim == 2 else x

        x, y = shaped(a["x_train"]), a["y_train"].reshape(-1).astype(np.int64)
        train, val = split_train(y, c)
        if len(train) < c.batch_size:
            raise UserError(
                f"data: {len(train)} training examples after the validation split is fewer "
                f"than data.batch_size={c.batch_size}"
            )
        test = slice(0, c.test_examples)
        return {
            "train": (x[train], y[train]),
            "validation": (x[val], y[val]),
            "test": (shaped(a["x_test"])[test], a["y_test"].reshape(-1).astype(np.int64)[test]),
        }

    def describe(self, hp: Any = None) -> DataMeta:
        parts = self._parts
        x = parts["train"][0]
        names = self.arrays.get("class_names")
        if names is None:
            ids = [self.arrays[f"y_{s}"].reshape(-1) for s in ("train", "test")]
            names = id_names(f"{self.path}: y_train and y_test", np.concatenate(ids))
        return DataMeta(
            task=self.task,
            input_shape=tuple(int(s) for s in x.shape[1:]),
            num_classes=len(names),
            class_names=[str(n) for n in names],
            num_train=len(x),
            num_validation=len(parts["validation"][0]),
            num_test=len(parts["test"][0]),
            fingerprint=self.config.fingerprint(),
            # Per channel, over every training step: the model's first layer normalises. A
            # channel constant in training keeps a scale of 1 (as sklearn's StandardScaler):
            # centred only, else any other value at test time lands ~1e6 deviations away.
            extra={"mean": x.mean(axis=(0, 1)).tolist(), "variance": _variance(x).tolist()},
        )

    def _dataset(self, part: str):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(self._parts[part])
        return ds.cache() if self.config.cache == "memory" else ds

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        import tensorflow as tf

        batch = self.global_batch(replicas)
        train = for_training(self._dataset("train"), self.config, batch)
        validation = self._dataset("validation").batch(batch).prefetch(tf.data.AUTOTUNE)
        steps = max(1, len(self._parts["train"][0]) // batch)
        return TrainData(train, validation, steps, batch)

    def train_and_validation_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        batch = self.global_batch(replicas)
        both = self._dataset("train").concatenate(self._dataset("validation"))
        n = len(self._parts["train"][0]) + len(self._parts["validation"][0])
        return TrainData(for_training(both, self.config, batch), None, max(1, n // batch), batch)

    def test_data(self, batch_size: int = 256, hp: Any = None):
        import tensorflow as tf

        return self._dataset("test").batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def serving(self, model: Any, hp: Any = None) -> Serving:
        """Raw float sequences of the data's shape in (normalised inside the model), class
        probabilities out."""
        import tensorflow as tf

        spec = tf.TensorSpec((None, *self.describe(hp).input_shape), tf.float32, name="inputs")
        return Serving(spec, lambda x: {"probabilities": model(x, training=False)})

    def example_inputs(self, count: int = 1) -> list[Any]:
        """The first test sequences as nested lists (L x C numbers)."""
        return self._parts["test"][0][:count].tolist()


def _variance(x: np.ndarray) -> np.ndarray:
    """Each channel's variance over examples and steps; 1 for a channel constant there."""
    variance = x.var(axis=(0, 1), dtype=np.float64)
    return np.where(variance > 0, variance, 1.0)
