"""Character-level language modelling: a text corpus -> windows of characters -> next characters.

The corpus is text files (`files`, concatenated in order) or the text of a TFDS dataset the
harness can read (`dataset`, e.g. an imported `imdb_reviews`; its `train` split's texts, one per
line). It is cut by position: the first part trains, the next part validates, the last part
tests (no window crosses a boundary). The vocabulary is the training part's characters (sorted,
index 0 for a character never seen in training); it lives in the exported model's graph.

Examples are `(ids[i : i + L], ids[i + 1 : i + L + 1])`: the model predicts the next character
at every position (the tutorials' "given the previous characters, predict the next one"), with
`L = sequence_length` and windows every `sequence_length` characters.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, PositiveInt, model_validator

from harness_core.errors import UserError
from pipelines import tfds_source
from pipelines.base import (
    DataMeta,
    Pipeline,
    Serving,
    TrainData,
    TrainingOrderConfig,
    check_default_among_choices,
    declare_choice,
    for_training,
)

OOV = "[UNK]"


class CharLMConfig(TrainingOrderConfig):
    """The job's `data:` section for `pipeline: char_lm`."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["char_lm"] = "char_lm"
    files: list[str] | None = Field(None, min_length=1)
    dataset: str | None = None
    data_dir: str | None = None
    download: bool = False
    max_chars: PositiveInt = 2_000_000  # the corpus's first characters
    lowercase: bool = False
    sequence_length: PositiveInt = 100
    sequence_length_choices: list[PositiveInt] | None = Field(None, min_length=1)
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.05, gt=0.0, lt=0.5)
    cache: Literal["memory", "none"] = "memory"

    @model_validator(mode="after")
    def _one_source(self) -> CharLMConfig:
        if (self.files is None) == (self.dataset is None):
            raise ValueError("give exactly one text source: files (text files) or dataset")
        if self.dataset is not None:
            tfds_source.check_dataset_name(self.dataset)
        check_default_among_choices(
            "sequence_length", self.sequence_length, self.sequence_length_choices
        )
        return self


class CharLMPipeline(Pipeline):
    Config = CharLMConfig
    task = "char_lm"
    supports_refit = True
    supports_tflite = False  # raw strings in
    config: CharLMConfig

    def check_available(self) -> None:
        if self.config.dataset:
            data_dir = tfds_source.resolve_data_dir(self.config.data_dir)
            tfds_source.ensure_prepared(self.config.dataset, data_dir, self.config.download)
        longest = max([self.config.sequence_length, *(self.config.sequence_length_choices or [])])
        for part, ids in self._ids.items():
            if len(ids) < longest + 1:
                raise UserError(
                    f"data: the {part} part has {len(ids)} characters, fewer than one window of "
                    f"sequence_length {longest} + 1; give more text or a shorter window"
                )

    # -- the corpus -------------------------------------------------------------------------
    @functools.cached_property
    def _corpus(self) -> str:
        c = self.config
        if c.files:
            texts = []
            for name in c.files:
                path = Path(name).expanduser()
                try:
                    # utf-8-sig: an editor's byte-order mark is not a character to learn.
                    texts.append(path.read_text(encoding="utf-8-sig"))
                except FileNotFoundError:
                    raise UserError(f"data.files: {path}: no such file") from None
                except IsADirectoryError:
                    raise UserError(f"data.files: {path} is a folder; list its files") from None
                except OSError as e:  # unreadable (permissions), an I/O error
                    raise UserError(f"data.files: {path}: {e.strerror or e}") from None
                except UnicodeDecodeError as e:
                    raise UserError(f"data.files: {path}: not UTF-8 text ({e.reason})") from None
            corpus = "\n".join(texts)
        else:
            corpus = self._dataset_text()
        corpus = corpus[: c.max_chars]
        if c.lowercase:
            corpus = corpus.lower()
        if not corpus:
            raise UserError("data: the corpus is empty")
        return corpus

    def _dataset_text(self) -> str:
        data_dir = tfds_source.resolve_data_dir(self.config.data_dir)
        texts, size = [], 0
        for text, _ in tfds_source.load(self.config.dataset, "train", data_dir):
            texts.append(text.numpy().decode("utf-8", "replace"))
            size += len(texts[-1]) + 1
            if size >= self.config.max_chars:
                break
        return "\n".join(texts)

    @functools.cached_property
    def vocabulary(self) -> list[str]:
        """The training part's characters, sorted; index 0 is reserved for unseen ones."""
        return sorted(set(self._split_text()["train"]))

    def _split_text(self) -> dict[str, str]:
        corpus, c = self._corpus, self.config
        n = len(corpus)
        n_test = max(1, int(n * c.test_fraction))
        n_val = max(1, int(n * c.validation_fraction))
        n_train = n - n_val - n_test
        return {
            "train": corpus[:n_train],
            "validation": corpus[n_train : n_train + n_val],
            "test": corpus[n_train + n_val :],
        }

    @functools.cached_property
    def _ids(self) -> dict[str, np.ndarray]:
        index = {ch: i + 1 for i, ch in enumerate(self.vocabulary)}
        return {
            part: np.fromiter((index.get(ch, 0) for ch in text), np.int32, len(text))
            for part, text in self._split_text().items()
        }

    def _length(self, hp: Any) -> int:
        if self.config.sequence_length_choices and hp is not None and "sequence_length" in hp:
            return hp.get("sequence_length")
        return self.config.sequence_length

    def declare_hyperparameters(self, hp: Any) -> None:
        c = self.config
        declare_choice(hp, "sequence_length", c.sequence_length, c.sequence_length_choices)

    def _windows(self, part: str, length: int) -> int:
        return (len(self._ids[part]) - 1) // length

    def describe(self, hp: Any = None) -> DataMeta:
        length = self._length(hp)
        counts = {part: self._windows(part, length) for part in ("train", "validation", "test")}
        return DataMeta(
            task=self.task,
            input_shape=(length,),
            num_classes=len(self.vocabulary) + 1,
            class_names=[],
            num_train=counts["train"],
            num_validation=counts["validation"],
            num_test=counts["test"],
            fingerprint=self.config.fingerprint(),
            extra={
                "vocabulary": self.vocabulary,
                "sequence_length": length,
                "prompts": self.prompts(),
                "lowercase": self.config.lowercase,
            },
            baselines={"unigram": {"bits_per_char": self.unigram_bits("test")}},
        )

    def unigram_bits(self, part: str) -> float:
        """The baseline a model must beat: bits per character of `part` under the training
        part's character frequencies (add-one smoothed, unseen characters included)."""
        train, ids = self._ids["train"], self._ids[part]
        counts = np.bincount(train, minlength=len(self.vocabulary) + 1).astype(np.float64) + 1
        probs = counts / counts.sum()
        return float(-np.mean(np.log2(probs[ids])))

    def prompts(self, count: int = 3, length: int = 40) -> list[str]:
        """Seeded prompts for generated samples: starts of lines of the validation part."""
        text = self._split_text()["validation"]
        starts = [0] + [i + 1 for i, ch in enumerate(text[:-1]) if ch == "\n"]
        step = max(1, len(starts) // count)
        return [
            text[s : s + length] for s in starts[::step][:count] if text[s : s + length].strip()
        ]

    # -- datasets -------------------------------------------------------------------------------
    def _examples(self, part: str, length: int):
        import tensorflow as tf

        ids = self._ids[part]
        n = self._windows(part, length)
        inputs = ids[: n * length].reshape(n, length)
        targets = ids[1 : n * length + 1].reshape(n, length)
        ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
        return ds.cache() if self.config.cache == "memory" else ds

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        import tensorflow as tf

        length = self._length(hp)
        batch = self.global_batch(replicas)
        train = for_training(self._examples("train", length), self.config, batch)
        validation = self._examples("validation", length).batch(batch).prefetch(tf.data.AUTOTUNE)
        steps = max(1, self._windows("train", length) // batch)
        return TrainData(train, validation, steps, batch)

    def train_and_validation_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        length = self._length(hp)
        batch = self.global_batch(replicas)
        both = self._examples("train", length).concatenate(self._examples("validation", length))
        n = self._windows("train", length) + self._windows("validation", length)
        return TrainData(for_training(both, self.config, batch), None, max(1, n // batch), batch)

    def test_data(self, batch_size: int = 256, hp: Any = None):
        import tensorflow as tf

        length = self._length(hp)
        return self._examples("test", length).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def example_inputs(self, count: int = 1) -> list[Any]:
        """Generation requests: a prompt, a length, a temperature (the serving inputs)."""
        return [{"prompt": p, "length": 100, "temperature": 0.8} for p in self.prompts(count)]

    def serving(self, model: Any, hp: Any = None) -> Serving:
        """Raw strings in, generated strings out: `prompt` (batch of strings), `length`
        (characters to generate) and `temperature` (sampling; lower is more conservative);
        the vocabulary is a lookup table inside the graph."""
        import tensorflow as tf

        from pipelines.char_lm_generate import generator

        fn, tables = generator(model, self.vocabulary, self._length(hp), self.config.lowercase)
        specs = [
            tf.TensorSpec((None,), tf.string, name="prompt"),
            tf.TensorSpec((), tf.int32, name="length"),
            tf.TensorSpec((), tf.float32, name="temperature"),
        ]
        return Serving(specs[0], fn, tracked=tables, extra_specs=specs[1:])


def bits(nats: float) -> float:
    """Cross-entropy in nats per character -> bits per character."""
    return nats / math.log(2)
