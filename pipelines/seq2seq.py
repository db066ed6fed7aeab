"""Sequence-to-sequence pairs of strings: "535+61" -> "596", or the user's own pairs.

Pairs come from `files` (`train`/`test`, CSV or JSONL, with `input_field` and `target_field`)
or a built-in generated `task`: `addition` (two integers of up to `max_digits` digits and their
sum). One character vocabulary serves both sides, taken from the training pairs; ids 0 = padding,
1 = start, 2 = end, 3 = a character unseen in training, then the characters. Training examples
are `((encoder ids, decoder ids), target ids)` with teacher forcing: the decoder reads
`start + target` and predicts `target + end`. Exports decode greedily from raw strings.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, PositiveInt, model_validator

from harness_core.errors import UserError
from pipelines.base import DataMeta, Pipeline, Serving, TrainData, TrainingOrderConfig, for_training

PAD, START, END, UNSEEN = 0, 1, 2, 3
RESERVED = 4


class Seq2SeqConfig(TrainingOrderConfig):
    """The job's `data:` section for `pipeline: seq2seq`."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["seq2seq"] = "seq2seq"
    task: Literal["addition"] | None = None
    files: dict[Literal["train", "test"], str] | None = None
    input_field: str = "input"
    target_field: str = "target"
    max_digits: PositiveInt = 3
    train_examples: PositiveInt = 20_000  # generated tasks; files: the first ones (all if more)
    test_examples: PositiveInt = 2_000
    validation_split: float = Field(0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_source(self) -> Seq2SeqConfig:
        if (self.task is None) == (self.files is None):
            raise ValueError("give exactly one source of pairs: task (e.g. addition) or files")
        if self.files is not None and set(self.files) != {"train", "test"}:
            raise ValueError("files needs both train and test")
        return self


def addition_pairs(count: int, max_digits: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    high = 10**max_digits
    a, b = rng.integers(0, high, count), rng.integers(0, high, count)
    return [(f"{x}+{y}", str(x + y)) for x, y in zip(a, b, strict=True)]


class Seq2SeqPipeline(Pipeline):
    Config = Seq2SeqConfig
    task = "seq2seq"
    supports_refit = True
    supports_tflite = False  # raw strings in
    config: Seq2SeqConfig

    def check_available(self) -> None:
        pairs = self._pairs
        if len(pairs["train"]) < 2 or not pairs["test"]:
            raise UserError("data: seq2seq needs at least 2 training pairs and 1 test pair")

    @functools.cached_property
    def _pairs(self) -> dict[str, list[tuple[str, str]]]:
        c = self.config
        if c.task == "addition":
            rng = np.random.default_rng(c.seed)
            train = addition_pairs(c.train_examples, c.max_digits, rng)
            # Test sums the model never trained on: drop any pair also drawn for training.
            seen = set(train)
            test = [
                p for p in addition_pairs(2 * c.test_examples, c.max_digits, rng) if p not in seen
            ]
            test = test[: c.test_examples]
        else:
            train = _read_pairs(Path(c.files["train"]), c.input_field, c.target_field)
            test = _read_pairs(Path(c.files["test"]), c.input_field, c.target_field)
            train, test = train[: c.train_examples], test[: c.test_examples]
        n_val = max(1, round(len(train) * c.validation_split))
        return {"train": train[:-n_val], "validation": train[-n_val:], "test": test}

    @functools.cached_property
    def vocabulary(self) -> list[str]:
        """Characters of the training pairs (both sides), sorted; id = index + RESERVED."""
        return sorted({ch for a, b in self._pairs["train"] for ch in a + b})

    @functools.cached_property
    def lengths(self) -> tuple[int, int]:
        """(longest input, longest target + 1 for the end id) over every split: shapes are
        static, so the padded length must hold any pair of the job."""
        pairs = [p for part in self._pairs.values() for p in part]
        return max(len(a) for a, _ in pairs), max(len(b) for _, b in pairs) + 1

    def _encode(self, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = {ch: i + RESERVED for i, ch in enumerate(self.vocabulary)}
        n_in, n_out = self.lengths
        pairs = self._pairs[part]
        enc = np.zeros((len(pairs), n_in), np.int32)
        dec = np.zeros((len(pairs), n_out), np.int32)
        out = np.zeros((len(pairs), n_out), np.int32)
        for row, (a, b) in enumerate(pairs):
            enc[row, : len(a)] = [index.get(ch, UNSEEN) for ch in a]
            target = [index.get(ch, UNSEEN) for ch in b]
            dec[row, : len(target) + 1] = [START, *target]
            out[row, : len(target) + 1] = [*target, END]
        return enc, dec, out

    def describe(self, hp: Any = None) -> DataMeta:
        n_in, n_out = self.lengths
        return DataMeta(
            task=self.task,
            input_shape=(n_in,),
            num_classes=len(self.vocabulary) + RESERVED,
            class_names=[],
            num_train=len(self._pairs["train"]),
            num_validation=len(self._pairs["validation"]),
            num_test=len(self._pairs["test"]),
            fingerprint=self.config.fingerprint(),
            extra={
                "vocabulary": self.vocabulary,
                "target_length": n_out,
                "samples": self._pairs["validation"][:4],
            },
        )

    def _dataset(self, part: str):
        import tensorflow as tf

        enc, dec, out = self._encode(part)
        return tf.data.Dataset.from_tensor_slices(((enc, dec), out)).cache()

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        import tensorflow as tf

        batch = self.global_batch(replicas)
        train = for_training(self._dataset("train"), self.config, batch)
        validation = self._dataset("validation").batch(batch).prefetch(tf.data.AUTOTUNE)
        steps = max(1, len(self._pairs["train"]) // batch)
        return TrainData(train, validation, steps, batch)

    def train_and_validation_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        batch = self.global_batch(replicas)
        both = self._dataset("train").concatenate(self._dataset("validation"))
        n = len(self._pairs["train"]) + len(self._pairs["validation"])
        return TrainData(for_training(both, self.config, batch), None, max(1, n // batch), batch)

    def test_data(self, batch_size: int = 256, hp: Any = None):
        import tensorflow as tf

        return self._dataset("test").batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def example_inputs(self, count: int = 1) -> list[Any]:
        return [a for a, _ in self._pairs["test"][:count]]

    def serving(self, model: Any, hp: Any = None) -> Serving:
        """Raw input strings in, greedily decoded output strings out (`decoded`); the
        vocabulary is a lookup table inside the graph."""
        import tensorflow as tf

        from pipelines.seq2seq_decode import greedy_decoder

        fn, tables = greedy_decoder(model, self.vocabulary, *self.lengths)
        return Serving(tf.TensorSpec((None,), tf.string, name="text"), fn, tracked=tables)


def _read_pairs(path: Path, input_field: str, target_field: str) -> list[tuple[str, str]]:
    if not path.is_file():
        raise UserError(f"data.files: {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's BOM is not text
    except UnicodeDecodeError as e:
        raise UserError(f"data.files: {path}: not UTF-8 text ({e.reason})") from None
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(text.split("\n"), 1):  # not splitlines (U+2028 too)
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}: line {number} is not JSON ({e.msg})") from None
    else:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))  # quoted newlines kept
    pairs = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or input_field not in row or target_field not in row:
            raise UserError(
                f"{path}: row {number} has no {input_field!r} and {target_field!r} fields "
                "(set data.input_field / data.target_field)"
            )
        source, target = row[input_field], row[target_field]
        if source in (None, "") or target in (None, ""):  # a short CSV row, a JSON null
            raise UserError(
                f"{path}: row {number} has an empty {input_field!r} or {target_field!r}"
            )
        pairs.append((str(source), str(target)))
    if not pairs:
        raise UserError(f"{path}: no pairs")
    return pairs
