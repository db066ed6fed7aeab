"""Image classification from any TFDS image/label dataset (fashion_mnist, mnist, cifar10, ...)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, PositiveInt

from harness.errors import UserError
from pipelines import tfds_source
from pipelines.base import DataMeta, Pipeline, PipelineConfig, TrainData


class ImageClassificationConfig(PipelineConfig):
    """The `data:` section of an image classification job."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["image_classification"] = "image_classification"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    download: bool = True
    validation_split: float = Field(0.1, gt=0.0, lt=1.0)
    train_examples: PositiveInt | None = None
    test_examples: PositiveInt | None = None
    batch_size: PositiveInt = 64
    cache: Literal["memory", "none"] = "memory"
    shuffle_buffer: PositiveInt = 10_000
    seed: int = 0
    deterministic: bool = False


class ImageClassificationPipeline(Pipeline):
    """TFDS images -> uint8 decode -> cache -> shuffle -> repeat -> batch -> float -> prefetch.

    Pixels stay in [0, 255]: scaling is the model's first layer, so an exported model takes
    raw images.
    """

    Config = ImageClassificationConfig
    task = "image_classification"
    config: ImageClassificationConfig

    @classmethod
    def check_config(cls, config: ImageClassificationConfig) -> None:
        tfds_source.check_dataset_name(config.dataset)

    @property
    def data_dir(self):
        return tfds_source.resolve_data_dir(self.config.data_dir)

    def check_available(self) -> None:
        tfds_source.ensure_prepared(self.config.dataset, self.data_dir, self.config.download)

    def _info(self):
        return tfds_source.builder(self.config.dataset, self.data_dir).info

    def _split_sizes(self) -> tuple[int, int, int]:
        splits = self._info().splits
        if "train" not in splits or "test" not in splits:
            raise UserError(f"data.dataset {self.config.dataset!r} needs train and test splits")
        total = splits["train"].num_examples
        n = min(self.config.train_examples or total, total)
        n_val = max(1, round(n * self.config.validation_split))
        if n - n_val < self.config.batch_size:
            raise UserError(
                f"data: {n - n_val} training examples after the validation split is fewer than "
                f"data.batch_size={self.config.batch_size}"
            )
        n_test = min(
            self.config.test_examples or splits["test"].num_examples, splits["test"].num_examples
        )
        return n - n_val, n_val, n_test

    def describe(self, hp: Any = None) -> DataMeta:
        info = self._info()
        image, label = info.supervised_keys or (None, None)
        features = info.features
        if image is None or not hasattr(features[label], "num_classes"):
            raise UserError(
                f"data.dataset {self.config.dataset!r} is not an image classification dataset"
            )
        shape = tuple(features[image].shape)
        if None in shape:
            raise UserError(
                f"data.dataset {self.config.dataset!r} has images of varying size {shape}"
            )
        n_train, n_val, n_test = self._split_sizes()
        return DataMeta(
            task=self.task,
            input_shape=shape,
            num_classes=features[label].num_classes,
            class_names=list(features[label].names),
            num_train=n_train,
            num_validation=n_val,
            num_test=n_test,
            fingerprint=self.config.fingerprint(),
        )

    def _source(self, start: int, stop: int, split: str = "train"):
        return tfds_source.load(self.config.dataset, f"{split}[{start}:{stop}]", self.data_dir)

    def _options(self):
        import tensorflow as tf

        options = tf.data.Options()
        options.deterministic = self.config.deterministic
        return options

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        import tensorflow as tf

        n_train, n_val, _ = self._split_sizes()
        batch = self.config.batch_size * replicas  # global batch: per-replica size x replicas
        train = self._source(0, n_train)
        # Cache after decode: PNG decoding dominates the step; uint8 keeps the cache 4x smaller.
        if self.config.cache == "memory":
            train = train.cache()
        train = (
            train.shuffle(self.config.shuffle_buffer, seed=self.config.seed)
            .repeat()
            .batch(batch, drop_remainder=True)
            .map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(self._options())
        )
        validation = self._eval_dataset(self._source(n_train, n_train + n_val), batch)
        return TrainData(train, validation, max(1, n_train // batch), batch)

    def _eval_dataset(self, ds, batch: int):
        import tensorflow as tf

        if self.config.cache == "memory":
            ds = ds.cache()
        return ds.batch(batch).map(_to_float).prefetch(tf.data.AUTOTUNE)

    def test_data(self, batch_size: int = 256):
        _, _, n_test = self._split_sizes()
        return self._eval_dataset(self._source(0, n_test, "test"), batch_size)


def _to_float(images, labels):
    import tensorflow as tf

    return tf.cast(images, tf.float32), labels
