"""Image classification: a TFDS dataset by name, a `.npz` of arrays, or a folder per class.

Train order (big_vision's `make_for_train`, with augmentation moved after batching): source ->
decode (+ resize) -> cache -> shuffle -> repeat -> batch(drop_remainder) -> float -> augment
(parallel, whole batches) -> prefetch. Augmenting whole batches is several times faster on small
images: per-example `Dataset.map` overhead costs more than the augmentation ops themselves.
Pixels stay in [0, 255]: scaling is the model's first layer, so an exported model takes raw
images.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, PositiveInt, model_validator

from harness_core.errors import UserError
from pipelines import tfds_source
from pipelines.augment import AugmentConfig
from pipelines.base import (
    DataMeta,
    LabelledSplitsConfig,
    Pipeline,
    Serving,
    TrainData,
    default_cache,
    for_training,
)
from pipelines.cache import cache_key, cached
from pipelines.image_sources import ArrayImages, FolderImages, TfdsImages, split_indices


class ImageClassificationConfig(LabelledSplitsConfig):
    """The `data:` section of an image classification job."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["image_classification"] = "image_classification"
    dataset: str | None = None
    arrays: str | None = None
    folder: str | None = None
    channels: Literal[1, 3] | None = None  # folders: None = as the images are (gray -> 1)
    image_size: tuple[PositiveInt, PositiveInt] | None = None
    data_dir: str | None = None
    download: bool = True
    validation_examples: PositiveInt | None = None  # a count; overrides validation_split
    cache: Literal["memory", "disk", "none"] = "memory"
    cache_dir: str | None = None
    augment: AugmentConfig = AugmentConfig()
    augment_strength_choices: list[float] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ImageClassificationConfig:
        given = [k for k in ("dataset", "arrays", "folder") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "set exactly one image source: dataset (TFDS name), arrays (.npz) or folder"
                + (f"; got {', '.join(given)}" if given else "")
            )
        return self


class ImageClassificationPipeline(Pipeline):
    Config = ImageClassificationConfig
    task = "image_classification"
    supports_refit = True
    shows_examples = True
    config: ImageClassificationConfig

    @classmethod
    def check_config(cls, config: ImageClassificationConfig) -> None:
        if config.dataset:
            tfds_source.check_dataset_name(config.dataset)

    @property
    def data_dir(self):
        return tfds_source.resolve_data_dir(self.config.data_dir)

    @functools.cached_property
    def source(self):
        c = self.config
        if c.dataset:
            return TfdsImages(c.dataset, self.data_dir, c.download)
        from pathlib import Path

        if c.arrays:
            return ArrayImages(Path(c.arrays).expanduser(), c.image_size)
        return FolderImages(Path(c.folder).expanduser(), c.image_size, c.channels)

    @functools.cached_property
    def _info(self) -> dict[str, Any]:
        return self.source.info()

    def check_available(self) -> None:
        self.source.check()
        self.describe()

    def declare_hyperparameters(self, hp: Any) -> None:
        choices = self.config.augment_strength_choices
        if choices:
            hp.Choice("augment_strength", choices, default=1.0 if 1.0 in choices else choices[0])

    def describe(self, hp: Any = None) -> DataMeta:
        plan = self._plan
        shape = self._info["shape"]
        if self.config.image_size:
            shape = (*self.config.image_size, shape[-1])
        if None in shape:
            raise UserError(
                f"data: images have varying sizes {shape}; set data.image_size to resize them"
            )
        return DataMeta(
            task=self.task,
            input_shape=tuple(shape),
            num_classes=len(self._info["class_names"]),
            class_names=self._info["class_names"],
            num_train=_size(plan["train"]),
            num_validation=_size(plan["validation"]),
            num_test=_size(plan["test"]),
            fingerprint=self.config.fingerprint(),
        )

    @functools.cached_property
    def _plan(self) -> dict[str, tuple]:
        """Which examples form each split: ("range", start, stop) or ("indices", array)."""
        c = self.config
        counts = self._info["counts"]
        n = min(c.train_examples or counts["train"], counts["train"])
        n_test = min(c.test_examples or counts["test"], counts["test"])
        if self.source.contiguous and not c.stratify:
            n_val = min(n - 1, c.validation_examples or max(1, round(n * c.validation_split)))
            plan = {"train": ("range", 0, n - n_val), "validation": ("range", n - n_val, n)}
        else:
            labels = self.source.labels("train")[:n]
            fraction = c.validation_examples / n if c.validation_examples else c.validation_split
            train, val = split_indices(labels, min(fraction, 0.99), c.stratify, c.seed)
            train, val = np.sort(train), np.sort(val)  # read in file order: faster
            plan = {"train": ("indices", train, n), "validation": ("indices", val, n)}
        plan["test"] = ("range", 0, n_test)
        if _size(plan["train"]) < c.batch_size:
            raise UserError(
                f"data: {_size(plan['train'])} training examples after the validation split is "
                f"fewer than data.batch_size={c.batch_size}"
            )
        return plan

    @functools.cached_property
    def _prepared(self) -> dict[str, Any]:
        return {}

    def _examples(self, part: str):
        """Decoded uint8 examples of one split part, resized if asked, then cached.

        Built once per pipeline: a warm worker keeps its pipeline across trials with the same
        data options, and with `cache: memory` a later trial reads the images already decoded
        in memory (a tf.data memory cache is shared by every iterator of its dataset).
        """
        if part not in self._prepared:
            self._prepared[part] = self._prepare(part)
        return self._prepared[part]

    def _prepare(self, part: str, cache: bool = True):
        import tensorflow as tf

        kind, *args = self._plan[part]
        split = "test" if part == "test" else "train"
        ds = self._select(split, kind, args)
        size = self.config.image_size
        if size and not isinstance(self.source, FolderImages):  # folders resize while decoding
            ds = ds.map(
                lambda x, y: (tf.cast(tf.image.resize(x, size), tf.uint8), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        if not cache:
            return ds
        # Cache after decode/resize: decoding dominates the step; uint8 keeps the cache small.
        key = cache_key(
            source=self._info["identity"],
            part=part,
            plan=_plan_id(kind, args),
            image_size=size,
            channels=self.config.channels,
        )
        cache_dir = self.config.cache_dir or default_cache(self.data_dir / "harness_cache")
        return cached(ds, self.config.cache, cache_dir, key)

    def _select(self, split: str, kind: str, args: list):
        import tensorflow as tf

        if kind == "range":
            start, stop = args
            if isinstance(self.source, TfdsImages):
                return self.source.dataset(split, start, stop)
            return self.source.dataset(split, np.arange(start, stop))
        indices, n = args
        if not isinstance(self.source, TfdsImages):
            return self.source.dataset(split, indices)
        mask = np.zeros(n, bool)
        mask[indices] = True
        keep = tf.constant(mask)
        return (
            self.source.dataset(split, 0, n)
            .enumerate()
            .filter(lambda i, ex: keep[i])
            .map(lambda i, ex: ex)
        )

    def augment_fn(self, hp: Any = None):
        """The training-only batch augmentation `augment_batch(images, seed)`, scaled by the
        tuned `augment_strength` if any; None when it would change nothing."""
        from pipelines.augment import make_batch_augment_fn

        strength = 1.0
        if hp is not None and "augment_strength" in hp.values:
            strength = hp.get("augment_strength")
        config = self.config.augment.scaled(strength)
        return None if config.is_identity() else make_batch_augment_fn(config)

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        batch = self.global_batch(replicas)
        train = self._for_training(self._examples("train"), hp, batch)
        validation = self._batched(self._examples("validation"), batch)
        return TrainData(train, validation, max(1, _size(self._plan["train"]) // batch), batch)

    def train_and_validation_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        """Training data over train + validation, for refitting the chosen configuration."""
        batch = self.global_batch(replicas)
        examples = self._examples("train").concatenate(self._examples("validation"))
        n = _size(self._plan["train"]) + _size(self._plan["validation"])
        return TrainData(self._for_training(examples, hp, batch), None, max(1, n // batch), batch)

    def _for_training(self, examples, hp: Any, batch: int):
        return for_training(
            examples, self.config, batch, after_batch=_to_float, augment=self.augment_fn(hp)
        )

    def _batched(self, ds, batch: int):
        import tensorflow as tf

        return ds.batch(batch).map(_to_float).prefetch(tf.data.AUTOTUNE)

    def serving(self, model: Any, hp: Any = None) -> Serving:
        """Raw uint8 images of the dataset's shape in, class probabilities out."""
        import tensorflow as tf

        spec = tf.TensorSpec((None, *self.describe(hp).input_shape), tf.uint8, name="image")
        return Serving(
            spec, lambda x: {"probabilities": model(tf.cast(x, tf.float32), training=False)}
        )

    def test_data(self, batch_size: int = 256, hp: Any = None):
        return self._batched(self._examples("test"), batch_size)

    def example_batch(self, data: TrainData, hp: Any = None) -> tuple[Any, Any, bool]:
        # A dataset of its own: iterating `data.train` would move its shuffle on, so the trial
        # that shows the examples would train on other batches than a rerun of it. Drawn from the
        # first batch's worth of examples, read before the cache (a partial read of a tf.data
        # cache is discarded, and here changed what the trial then trained on): filling the
        # job's whole shuffle buffer for one picture cost a second of the first trial.
        examples = self._prepare("train", cache=False).take(data.batch_size)
        train = self._for_training(examples, hp, data.batch_size)
        images, labels = next(iter(train))
        return images, labels, self.augment_fn(hp) is not None

    def example_inputs(self, count: int = 1) -> list[Any]:
        """The first test images as nested lists of 0-255 integers (H x W x C)."""
        return [image.numpy().tolist() for image, _ in self._examples("test").take(count)]


def _size(part: tuple) -> int:
    return part[2] - part[1] if part[0] == "range" else len(part[1])


def _plan_id(kind: str, args: list) -> str:
    if kind == "range":
        return f"range:{args[0]}:{args[1]}"
    return "indices:" + hashlib.sha256(np.asarray(args[0]).tobytes()).hexdigest()[:16]


def _to_float(images, labels):
    import tensorflow as tf

    return tf.cast(images, tf.float32), labels
